"""A run a dying daemon left STARTING goes back to the queue; a run something may still be starting does not."""

import json
import time

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from trading_maintenance.core.runs.stranded_launches import STRANDED_AFTER_SECONDS, StartingRun, judge
from trading_maintenance.defs.runs.stranded_launch_sensor import stranded_launch_sensor
from trading_maintenance_tests.private_servers import free_port

NOW = 1_000_000.0
OLD = NOW - STRANDED_AFTER_SECONDS - 1


@pytest.mark.parametrize(("facts", "requeue", "reason"), [
    (dict(starting_since=None, process_started=False, handed_to_code_server=False, code_server_holds_it=None), False, "no STARTING"),
    (dict(starting_since=NOW - 5, process_started=False, handed_to_code_server=False, code_server_holds_it=None), False, "under 60 s"),
    (dict(starting_since=OLD, process_started=True, handed_to_code_server=True, code_server_holds_it=None), False, "run process has started"),
    (dict(starting_since=OLD, process_started=False, handed_to_code_server=True, code_server_holds_it=True), False, "holds the run"),
    (dict(starting_since=OLD, process_started=False, handed_to_code_server=False, code_server_holds_it=None), True, "never handed"),
    (dict(starting_since=OLD, process_started=False, handed_to_code_server=True, code_server_holds_it=False), True, "does not hold it"),
    (dict(starting_since=OLD, process_started=False, handed_to_code_server=True, code_server_holds_it=None), True, "is gone"),
])
def test_judge_requeues_only_when_nothing_can_be_starting_the_run(facts, requeue, reason):
    verdict = judge(StartingRun(run_id="r", job_name="j", **facts), NOW)
    assert verdict.requeue is requeue and reason in verdict.reason, verdict


@dg.op
def _noop():
    return None


@dg.job
def _some_job():
    _noop()


def _origin() -> RemoteJobOrigin:
    """Where a queued run says its job lives (run storage refuses a QUEUED run without one)."""
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__, attribute="_some_job"), location_name="here")
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "_some_job")


def _mark_starting(instance, seconds_ago: float, tags=None) -> str:
    """What the queue does first when it dequeues a run: the STARTING event, here dated in the past."""
    run = instance.create_run_for_job(job_def=_some_job, status=dg.DagsterRunStatus.NOT_STARTED, tags=tags or {},
                                      remote_job_origin=_origin())
    instance.report_dagster_event(DagsterEvent(event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name),
                                  run_id=run.run_id, timestamp=time.time() - seconds_ago)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTING
    return run.run_id


def _messages(instance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    return "\n".join(record.event_log_entry.message or "" for record in records)


def test_sensor_puts_stranded_runs_back_in_the_queue_and_leaves_the_rest():
    gone = json.dumps({"host": "127.0.0.1", "port": free_port()})
    with dg.instance_for_test() as instance:
        never_handed = _mark_starting(instance, 90)
        server_gone = _mark_starting(instance, 90, tags={GRPC_INFO_TAG: gone})
        just_dequeued = _mark_starting(instance, 5)
        process_started = _mark_starting(instance, 90, tags={GRPC_INFO_TAG: gone})
        instance.report_engine_event("Started process for run (pid: 4242).", instance.get_run_by_id(process_started))

        result = stranded_launch_sensor(dg.build_sensor_context(instance=instance))

        assert "put 2 stranded run(s) back in the queue" in result.skip_message
        for run_id, why in [(never_handed, "never handed to a code server"), (server_gone, "its code server is gone")]:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED
            assert "Put back in the run queue: the daemon stopped while launching this run (STARTING for 9" in _messages(instance, run_id)
            assert why in _messages(instance, run_id)
        for run_id in (just_dequeued, process_started):
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTING
            assert "Put back in the run queue" not in _messages(instance, run_id)

        again = stranded_launch_sensor(dg.build_sensor_context(instance=instance))
        assert "no stranded run" in again.skip_message and "run process has started" in again.skip_message
        assert all(instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED for run_id in (never_handed, server_gone))


def test_runs_of_another_launcher_are_left_to_its_own_run_monitoring():
    """A Kubernetes pod may take minutes to start with nothing in the event log: such runs are never requeued."""
    launcher = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
        never_handed = _mark_starting(instance, 600)

        result = stranded_launch_sensor(dg.build_sensor_context(instance=instance))

        assert "the run launcher is MockedRunLauncher" in result.skip_message
        assert instance.get_run_by_id(never_handed).status == dg.DagsterRunStatus.STARTING
