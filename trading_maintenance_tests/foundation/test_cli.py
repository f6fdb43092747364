"""The project CLI: a run is a Dagster run in the configured instance; history reads it back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trading_maintenance_tests.conftest import write_config

CLI = [sys.executable, "-m", "trading_maintenance.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(tmp_path, data_dir, redis_url):
    home = tmp_path / "dagster_home"
    config = write_config(tmp_path, data_dir)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MAINTENANCE_CONFIG": str(config),
        "TRADING_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "MAX_CONCURRENT_TASKS": "2",
        "TASK_TIMEOUT_MINUTES": "7",
    }


def _run(args, env, check=True):
    result = subprocess.run(CLI + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}: {result.stdout[-2000:]} {result.stderr[-2000:]}")
    return result


def test_run_then_history_and_status(cli_env, redis_client):
    run = _run(["maintenance", "run", "--task", "system_health_check"], cli_env)
    assert "system_health_check: succeeded" in run.stdout
    history = json.loads(_run(["maintenance", "history", "--limit", "5", "--json"], cli_env).stdout)
    assert len(history) == 1
    assert history[0]["job"] == "system_health_check_job" and history[0]["status"] == "SUCCESS"
    assert history[0]["trigger"] == "cli" and history[0]["task"] == "system_health_check"
    assert history[0]["run_id"] in run.stdout.replace("\n", "")
    status = json.loads(_run(["status", "--json"], cli_env).stdout)
    assert status["health"]["run_id"] == history[0]["run_id"]
    assert json.loads(redis_client.get("maintenance:result:system_health_check"))["run_id"] == history[0]["run_id"]
    from dagster import DagsterInstance

    with DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:  # what the daemon will enforce
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 2
        assert {"key": "maintenance/task", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in queue.tag_concurrency_limits
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 420


def test_dry_run_flag_reaches_the_ops(cli_env, data_dir):
    temp = data_dir / "temp"
    temp.mkdir()
    old = temp / "old.tmp"
    old.write_text("x")
    os.utime(old, (0, 0))
    result = _run(["maintenance", "run", "--task", "emergency_maintenance", "--dry-run"], cli_env)
    assert "succeeded" in result.stdout and old.exists()
    _run(["maintenance", "run", "--task", "emergency_maintenance"], cli_env)
    assert not old.exists()


def test_unknown_task_lists_valid_names_and_exits_2(cli_env):
    result = _run(["maintenance", "run", "--task", "defragment_everything"], cli_env, check=False)
    assert result.returncode == 2
    assert "unknown task 'defragment_everything'" in result.stderr
    for name in ("system_health_check", "data_cleanup", "backup_critical_data", "security_audit"):
        assert name in result.stderr


def test_schedule_lists_schedules_with_timezone(cli_env):
    rows = json.loads(_run(["maintenance", "schedule", "--json"], cli_env).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["system_health_check_schedule"]["timezone"] == "America/New_York"
    assert by_name["system_health_check_schedule"]["status"] == "RUNNING"
    assert by_name["emergency_maintenance_sensor"]["kind"] == "sensor"


def test_bad_configuration_is_a_clear_error(cli_env):
    env = {**cli_env, "MAX_CONCURRENT_TASKS": "lots"}
    result = _run(["status"], env, check=False)
    assert result.returncode == 2
    assert "environment variable MAX_CONCURRENT_TASKS" in result.stderr and "Traceback" not in result.stderr
