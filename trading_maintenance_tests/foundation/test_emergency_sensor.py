"""The emergency sensor: a low score launches once per incident, the cooldown skips, recovery resets."""

import json
import time

import dagster as dg

from trading_maintenance.core.emergency.decision import HealthReading, decide
from trading_maintenance.defs.emergency.sensors import emergency_maintenance_sensor
from trading_maintenance.resources import MaintenanceSettingsResource
from trading_maintenance_tests.conftest import write_config


def _report(instance, score: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="system_health", metadata={"health_score": float(score)})
    )


def _tick(instance, cursor, settings):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
    result = emergency_maintenance_sensor(context)
    return result, result.cursor


def test_sensor_launches_once_per_incident_and_resets_on_recovery(tmp_path, data_dir):
    settings = MaintenanceSettingsResource(config_path=str(write_config(tmp_path, data_dir)))
    with dg.instance_for_test() as instance:
        result, cursor = _tick(instance, None, settings)
        assert not result.run_requests and "no health check" in result.skip_reason.skip_message

        _report(instance, 85)
        result, cursor = _tick(instance, cursor, settings)
        assert not result.run_requests and "score 85 is above the emergency threshold 30" in result.skip_reason.skip_message

        _report(instance, 12)
        result, cursor = _tick(instance, cursor, settings)
        assert len(result.run_requests) == 1
        first_key = result.run_requests[0].run_key
        assert first_key.startswith("emergency-") and result.run_requests[0].tags["maintenance/health_score"] == "12"

        _report(instance, 10)  # still low, within the cooldown
        result, cursor = _tick(instance, cursor, settings)
        assert not result.run_requests and "cooldown ends in" in result.skip_reason.skip_message

        _report(instance, 75)  # recovered
        result, cursor = _tick(instance, cursor, settings)
        assert not result.run_requests and "recovered" in result.skip_reason.skip_message
        assert "incident" not in json.loads(cursor)

        _report(instance, 5)  # a new incident gets a new run key
        result, cursor = _tick(instance, cursor, settings)
        assert len(result.run_requests) == 1 and result.run_requests[0].run_key != first_key


def test_sensor_relaunches_after_cooldown_only_on_a_fresh_reading(tmp_path, data_dir):
    settings = MaintenanceSettingsResource(config_path=str(write_config(tmp_path, data_dir)))
    with dg.instance_for_test() as instance:
        _report(instance, 10)
        result, cursor = _tick(instance, None, settings)
        assert result.run_requests
        state = json.loads(cursor)
        state["incident"]["last_launch_at"] = time.time() - 2 * 3600  # the 60-minute cooldown is over
        result, cursor = _tick(instance, json.dumps(state), settings)
        assert not result.run_requests and "waiting for a health check newer" in result.skip_reason.skip_message
        _report(instance, 11)
        result, cursor = _tick(instance, cursor, settings)
        assert len(result.run_requests) == 1 and result.run_requests[0].run_key.endswith("-2")


def test_threshold_comes_from_settings(tmp_path, data_dir):
    config = write_config(tmp_path, data_dir, maintenance={"scheduling": {"emergency_health_threshold": 50}})
    settings = MaintenanceSettingsResource(config_path=str(config))
    with dg.instance_for_test() as instance:
        _report(instance, 45)
        result, _ = _tick(instance, None, settings)
        assert result.run_requests  # 45 < 50 here, though not below the default 30


def test_decide_at_the_threshold_is_healthy():
    reading = HealthReading(30.0, 0.0, 1)
    assert decide(reading, 30, 3600, {}, 100.0).launch is False
    assert decide(HealthReading(29.9, 0.0, 1), 30, 3600, {}, 100.0).launch is True


def test_sensor_is_running_by_default():
    assert emergency_maintenance_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert emergency_maintenance_sensor.description
