"""One step of a task at a time, whatever launched it: every step of a task is in the pool
`maintenance_<task>`, the instance limits each pool to one, and the CLI's in-process runs wait for
a held slot instead of running beside it (or deadlocking)."""

import os
import subprocess
import sys
import time

import dagster as dg

from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config

CLI = [sys.executable, "-m", "trading_maintenance.cli"]
POOL = "maintenance_system_health_check"


def _env(tmp_path, data_dir, redis_url):
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir)),
        "TRADING_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
    }


def _wait_for(condition, what: str, limit: float = 120.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def test_a_cli_run_waits_for_the_task_pool_slot_held_by_another_run(tmp_path, data_dir, redis_url):
    env = _env(tmp_path, data_dir, redis_url)
    init = subprocess.run(CLI + ["init"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    assert init.returncode == 0, init.stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        storage = instance.event_log_storage
        # another run (launched from the UI, say) holds the health check's only slot
        storage.initialize_concurrency_limit_to_default(POOL)
        assert storage.claim_concurrency_slot(POOL, "ui-run", "check_system_health").is_claimed
        cli = subprocess.Popen(CLI + ["maintenance", "run", "--task", "system_health_check"], env=env, cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def cli_step_waits():
                return [step for step in storage.get_concurrency_info(POOL).pending_steps
                        if step.run_id != "ui-run" and step.assigned_timestamp is None]

            _wait_for(cli_step_waits, "the CLI run's step to queue for the slot")
            assert cli.poll() is None
            assert not instance.fetch_materializations(dg.AssetKey("system_health"), limit=1).records
            storage.free_concurrency_slot_for_step("ui-run", "check_system_health")
            out, err = cli.communicate(timeout=180)
        finally:
            if cli.poll() is None:
                cli.kill()
        assert cli.returncode == 0, err[-2000:]
        assert instance.fetch_materializations(dg.AssetKey("system_health"), limit=1).records
        info = storage.get_concurrency_info(POOL)
        assert info.active_slot_count == 0 and not info.pending_steps
