"""Every way in obeys the same run limits: the CLI's in-process runs are counted against
max_concurrent_runs and the one-run-per-task limit of the instance, a run whose process died stops
blocking its task, and `--config` reaches the op config."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from trading_maintenance.core.runs.limits import RunInProgress, TagLimit, may_start
from trading_maintenance.run_launch import submit_to_queue
from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config

CLI = [sys.executable, "-m", "trading_maintenance.cli"]
PER_TASK = TagLimit("maintenance/task", 1, per_unique_value=True)


def _running(run_id, task, status="STARTED"):
    return RunInProgress(run_id, f"{task}_job", status, {"maintenance/task": task})


def test_may_start_names_the_run_of_the_same_task():
    decision = may_start({"maintenance/task": "log_rotation"}, [_running("r1", "log_rotation")], 3, [PER_TASK])
    assert not decision.allowed and decision.same_task
    assert [run.run_id for run in decision.blocking] == ["r1"] and "r1" in decision.reason


def test_may_start_other_tasks_until_the_overall_limit():
    in_progress = [_running("r1", "log_rotation"), _running("r2", "backup", "STARTING")]
    assert may_start({"maintenance/task": "cache_cleanup"}, in_progress, 3, [PER_TASK]).allowed
    full = may_start({"maintenance/task": "cache_cleanup"}, in_progress, 2, [PER_TASK])
    assert not full.allowed and not full.same_task and {r.run_id for r in full.blocking} == {"r1", "r2"}
    assert may_start({"maintenance/task": "cache_cleanup"}, in_progress * 5, -1, [PER_TASK]).allowed  # -1: no limit


def test_may_start_with_a_limit_on_one_tag_value():
    only_backups = [TagLimit.from_instance_config({"key": "maintenance/task", "value": "backup", "limit": 1})]
    assert may_start({"maintenance/task": "log_rotation"}, [_running("r1", "log_rotation")], 5, only_backups).allowed
    assert not may_start({"maintenance/task": "backup"}, [_running("r2", "backup")], 5, only_backups).allowed


def test_every_job_carries_the_task_tag_the_queue_limits_on():
    from trading_maintenance.definitions import defs
    from trading_maintenance.tasks import TASKS

    jobs = [job for job in defs.get_repository_def().get_all_jobs() if not job.name.startswith("__ASSET_JOB")]
    assert jobs
    for job in jobs:
        assert job.run_tags.get("maintenance/task"), job.name
        assert int(job.run_tags["dagster/max_runtime"]) > 0, job.name
    for task in TASKS.values():
        assert defs.resolve_job_def(task.job_name).run_tags["maintenance/task"] == task.name


@pytest.fixture
def cli_env(tmp_path, data_dir, redis_url):
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir)),
        "TRADING_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "MAX_CONCURRENT_TASKS": "2",
    }


def _run(args, env):
    return subprocess.run(CLI + args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)


def _popen(args, env):
    return subprocess.Popen(CLI + args, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dg.op
def _noop():
    pass


@dg.job(tags={"maintenance/task": "system_health_check"})
def _blocking_job():
    _noop()


def _in_progress_run(env, task="system_health_check", status=dg.DagsterRunStatus.STARTED):
    """A run of `task` in progress, held by this (live) test process."""
    assert _run(["init"], env).returncode == 0
    me = psutil.Process()
    tags = {"maintenance/task": task, "maintenance/pid": str(me.pid), "maintenance/process_started": f"{me.create_time():.2f}",
            "maintenance/host": socket.gethostname()}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.create_run_for_job(job_def=_blocking_job, status=status, tags=tags).run_id


def _runs(env, job_name):
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_run_records(dg.RunsFilter(job_name=job_name))


def test_a_second_run_of_a_task_in_progress_is_refused_with_its_id(cli_env):
    blocking = _in_progress_run(cli_env)
    result = _run(["maintenance", "run", "--task", "system_health_check"], cli_env)
    assert result.returncode == 3, result.stderr[-2000:]
    assert blocking in result.stderr
    assert _runs(cli_env, "system_health_check_job") == []


def test_the_overall_limit_holds_for_cli_runs(cli_env):
    env = {**cli_env, "MAX_CONCURRENT_TASKS": "1"}
    assert _run(["init"], env).returncode == 0
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:  # queued as the UI leaves it with no daemon
        blocking = submit_to_queue(instance, "log_rotation_job", {}, {}, "trading_maintenance")
        assert instance.get_run_by_id(blocking).status == dg.DagsterRunStatus.QUEUED
    result = _run(["maintenance", "run", "--task", "system_health_check"], env)
    assert result.returncode == 3 and blocking in result.stderr and "max_concurrent_runs 1" in result.stderr


def test_wait_starts_once_the_run_in_progress_ends(cli_env):
    blocking = _in_progress_run(cli_env)
    waiting = _popen(["maintenance", "run", "--task", "system_health_check", "--wait"], cli_env)
    try:
        first_line = waiting.stdout.readline()
        assert "waiting" in first_line and blocking in first_line
        with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
            instance.report_run_canceled(instance.get_run_by_id(blocking))
        assert waiting.wait(timeout=120) == 0, waiting.stderr.read()[-2000:]
        assert "system_health_check: succeeded" in waiting.stdout.read()
    finally:
        waiting.kill()
        waiting.communicate()


def test_commands_racing_for_one_task_never_run_it_twice_at_once(tmp_path, data_dir, cli_env):
    (tmp_path / "racing").mkdir()
    env = {**cli_env, "MAINTENANCE_CONFIG": str(write_config(tmp_path / "racing", data_dir, maintenance={"alerts": {"cpu_sample_seconds": 3}}))}
    assert _run(["init"], env).returncode == 0
    racers = [_popen(["maintenance", "run", "--task", "system_health_check"], env) for _ in range(3)]
    codes = [racer.wait(timeout=180) for racer in racers]
    for racer in racers:
        racer.communicate()
    assert sorted(set(codes)) in ([0], [0, 3]), codes
    records = sorted(_runs(env, "system_health_check_job"), key=lambda r: r.start_time)
    assert len(records) == codes.count(0)
    for earlier, later in zip(records, records[1:]):
        assert earlier.end_time <= later.start_time


def test_a_run_whose_process_was_killed_is_failed_and_blocks_nothing(tmp_path, data_dir, cli_env):
    (tmp_path / "slow").mkdir()
    slow = {**cli_env, "MAINTENANCE_CONFIG": str(write_config(tmp_path / "slow", data_dir, maintenance={"alerts": {"cpu_sample_seconds": 30}}))}
    assert _run(["init"], slow).returncode == 0
    victim = _popen(["maintenance", "run", "--task", "system_health_check"], slow)
    try:
        while not [r for r in _runs(slow, "system_health_check_job") if r.dagster_run.status == dg.DagsterRunStatus.STARTED]:
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        victim.kill()
        victim.communicate()
    (killed,) = _runs(slow, "system_health_check_job")
    assert killed.dagster_run.status == dg.DagsterRunStatus.STARTED  # nobody has noticed yet
    result = _run(["maintenance", "run", "--task", "system_health_check"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        assert instance.get_run_by_id(killed.dagster_run.run_id).status == dg.DagsterRunStatus.FAILURE
        (failure,) = instance.all_logs(killed.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        message = failure.dagster_event.message
        assert f"pid {victim.pid}" in message and "ended without finishing it" in message


def test_config_reaches_the_op_config(cli_env):
    result = _run(["maintenance", "run", "--task", "database_maintenance", "--dry-run", "--config", "allow_during_market_hours=true"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = _runs(cli_env, "database_maintenance_job")
    op_config = record.dagster_run.run_config["ops"]["maintain_trading_database"]["config"]
    assert op_config == {"dry_run": True, "allow_during_market_hours": True}


def test_config_key_not_in_the_job_is_named_with_the_valid_keys(cli_env):
    result = _run(["maintenance", "run", "--task", "database_maintenance", "--config", "allow_during_lunch=true"], cli_env)
    assert result.returncode == 2
    assert "unknown key 'allow_during_lunch'" in result.stderr and "allow_during_market_hours" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_value_of_the_wrong_type_is_a_clear_error(cli_env):
    result = _run(["maintenance", "run", "--task", "database_maintenance", "--config", "allow_during_market_hours=sometimes"], cli_env)
    assert result.returncode == 2
    assert "allow_during_market_hours" in result.stderr and "Bool" in result.stderr and "Traceback" not in result.stderr


def test_no_wait_needs_a_daemon(cli_env):
    result = _run(["maintenance", "run", "--task", "system_health_check", "--no-wait"], cli_env)
    assert result.returncode == 2 and "--no-wait needs a daemon" in result.stderr
    assert _runs(cli_env, "system_health_check_job") == []


@pytest.mark.slow
def test_with_a_daemon_the_cli_goes_through_the_run_queue(cli_env):
    assert _run(["init"], cli_env).returncode == 0
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"], env=cli_env,
                              cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
            while "QUEUED_RUN_COORDINATOR" not in instance.get_daemon_heartbeats():
                assert daemon.poll() is None
                time.sleep(0.5)
        followed = _run(["maintenance", "run", "--task", "system_health_check"], cli_env)
        assert followed.returncode == 0, followed.stderr[-2000:]
        assert "queued for the daemon" in followed.stdout and "system_health_check: succeeded" in followed.stdout
        submitted = _run(["maintenance", "run", "--task", "system_health_check", "--no-wait"], cli_env)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        queued_id = submitted.stdout.split("run ")[-1].strip()
        with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
            # the daemon's own schedules and sensors may start health checks meanwhile: count the CLI's runs
            runs = {r.dagster_run.run_id: r.dagster_run for r in instance.get_run_records(dg.RunsFilter(job_name="system_health_check_job"))
                    if not {"dagster/schedule_name", "dagster/sensor_name"} & set(r.dagster_run.tags)}
            assert queued_id in runs and len(runs) == 2
            assert all(run.remote_job_origin is not None for run in runs.values())  # both went through the queue
            while not runs[queued_id].is_finished:
                time.sleep(0.5)
                runs[queued_id] = instance.get_run_by_id(queued_id)
            assert runs[queued_id].is_success
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
