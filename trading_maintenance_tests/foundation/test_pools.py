"""One run of a task at a time, whatever launched it: every step of a task is in the pool
`maintenance_<task>`, the instance counts each pool in runs (limit one), and the CLI's in-process
runs are refused (or wait, with --wait) while another run uses the task's pool, even one without
the task's tags (an asset backfill's or the UI's), instead of running beside it."""

import os
import subprocess
import sys
import time

import dagster as dg
from dagster import DagsterRunStatus
from dagster._core.instance.config import PoolGranularity

from trading_maintenance.definitions import defs
from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance.tasks import resolve_task
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


def test_a_cli_run_waits_while_another_run_without_task_tags_uses_the_task_pool(tmp_path, data_dir, redis_url):
    env = _env(tmp_path, data_dir, redis_url)
    init = subprocess.run(CLI + ["init"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    assert init.returncode == 0, init.stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity == PoolGranularity.RUN
        # a run launched as an asset backfill's are: the task's steps, none of the job's tags
        job = defs.resolve_job_def(resolve_task("system_health_check").job_name)
        backfill_run = instance.create_run_for_job(job_def=job, status=DagsterRunStatus.STARTED, tags={})
        assert POOL in backfill_run.run_op_concurrency.all_pools and "maintenance/task" not in backfill_run.tags
        refused = subprocess.run(CLI + ["maintenance", "run", "--task", "system_health_check"], env=env, cwd=PROJECT_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
        assert refused.returncode != 0 and POOL in refused.stdout and backfill_run.run_id in refused.stdout, refused.stdout
        output = tmp_path / "cli.out"
        with open(output, "w") as sink:
            cli = subprocess.Popen(CLI + ["maintenance", "run", "--task", "system_health_check", "--wait"], env=env, cwd=PROJECT_ROOT,
                                   stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for(lambda: "waiting" in output.read_text(), "the CLI run to wait for the pool")
            assert POOL in output.read_text() and backfill_run.run_id in output.read_text()
            assert cli.poll() is None
            assert not instance.fetch_materializations(dg.AssetKey("system_health"), limit=1).records
            instance.report_run_canceled(backfill_run, message="the backfill run ends")
            cli.wait(timeout=180)
        finally:
            if cli.poll() is None:
                cli.kill()
        assert cli.returncode == 0, output.read_text()[-2000:]
        assert instance.fetch_materializations(dg.AssetKey("system_health"), limit=1).records
