"""The adaptive sensor re-orders real queued runs: cleanup before backup while disk fills up."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.defs.intelligence import adaptive_sensor
from trading_maintenance.resources import RedisResource
from trading_maintenance.run_launch import submit_to_queue
from trading_maintenance_tests.reports.conftest import store_health

NY = ZoneInfo("America/New_York")


def _dequeue_order(instance) -> list[str]:
    """The order Dagster's run queue daemon would launch the queued runs in (its own sort, FIFO within a priority)."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), ascending=True)
    return [run.run_id for run in QueuedRunCoordinatorDaemon(interval_seconds=1)._priority_sort(queued)]
QUEUED = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}


def test_queued_cleanup_goes_before_queued_backup_when_disk_is_short(redis_url, data_dir, monkeypatch):
    now = datetime(2026, 11, 28, 10, 0, tzinfo=NY).timestamp()  # a Saturday: market closed
    monkeypatch.setattr(adaptive_sensor, "current_time", lambda: now)
    with dg.instance_for_test(overrides=QUEUED) as instance:
        # Queued as the UI or the API leaves them, from the project's own code location, backup first.
        backup = submit_to_queue(instance, "backup_archive_job", {}, {}, "trading_maintenance")
        cleanup = submit_to_queue(instance, "data_cleanup_job", {}, {}, "trading_maintenance")
        assert {instance.get_run_by_id(r).status for r in (backup, cleanup)} == {dg.DagsterRunStatus.QUEUED}
        assert _dequeue_order(instance) == [backup, cleanup]
        for i in range(8):  # disk +2 points an hour, 94 % now: full in about 3 hours
            store_health(instance, now - (7 - i) * 3600, disk_percent=80.0 + 2 * i)

        context = dg.build_sensor_context(instance=instance, resources={"redis": RedisResource(url=redis_url, data_dir=str(data_dir))})
        result = adaptive_sensor.adaptive_maintenance_sensor(context)

        assert not result.run_requests  # data_cleanup is already queued: no second run
        reason = result.skip_reason.skip_message
        assert "already queued or running" in reason and f"data_cleanup {cleanup[:8]} priority" in reason
        priority = {r: int(instance.get_run_by_id(r).tags["dagster/priority"]) for r in (backup, cleanup)}
        assert priority[cleanup] > priority[backup]
        assert _dequeue_order(instance) == [cleanup, backup]  # first in, yet second out

        again = adaptive_sensor.adaptive_maintenance_sensor(
            dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                    resources={"redis": RedisResource(url=redis_url, data_dir=str(data_dir))}))
        assert "priority" not in again.skip_reason.skip_message.split("already queued or running", 1)[1]  # nothing left to change
