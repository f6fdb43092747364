"""scripts/start for real: the UI comes up, SIGTERM or Ctrl-C (SIGINT to the process group) stops every
process it started (UI, daemon, code server, demo services and broker) within 10 s, and a second start
on the busy port says so and starts nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest

from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.api.conftest import free_port
from trading_maintenance_tests.conftest import write_config

pytestmark = pytest.mark.slow

START = str(PROJECT_ROOT / "scripts" / "start")
UI_START_SECONDS = 300  # a loaded two-core machine needs minutes to load the definitions three times
STOP_SECONDS = 10


def _start_env(tmp_path, data_dir, redis_url, port: int, name: str) -> dict[str, str]:
    service_port = free_port()
    (tmp_path / name).mkdir()
    config = write_config(tmp_path / name, data_dir, services=[{"name": "risk_manager", "url": f"http://127.0.0.1:{service_port}/health"}])
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALPACA_", "APCA_", "PYTEST_"))}
    env.update(DAGSTER_HOME=str(tmp_path / name / "dagster_home"), MAINTENANCE_CONFIG=str(config), TRADING_DATA_DIR=str(data_dir),
               REDIS_URL=redis_url, MAINTENANCE_ENV_FILE=str(tmp_path / name / ".env"), DEMO_BROKER_PORT=str(free_port()),
               PORT=str(port), NO_INSTALL="1", DAGSTER_DISABLE_TELEMETRY="1")
    return env


def _skip_demo_seed(data_dir) -> None:
    """Market data already present: the start does not spend its time seeding the demo platform."""
    (data_dir / "parquet" / "market_data" / "AAPL").mkdir(parents=True, exist_ok=True)


def _wait_for_ui(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + UI_START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"scripts/start exited {process.returncode} before the UI answered"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"the UI did not answer on port {port} within {UI_START_SECONDS} s")


def _still_running(procs: list[psutil.Process]) -> list[str]:
    running = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                running.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return running


def _started_tree(process: subprocess.Popen) -> list[psutil.Process]:
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    commands = [" ".join(proc.cmdline()) for proc in tree]
    assert any("code-server" in command or "api grpc" in command for command in commands), commands
    assert any("demo services" in command for command in commands), commands
    assert any("demo broker" in command for command in commands), commands
    return tree


def _stop_and_check(process: subprocess.Popen, send_signal) -> None:
    tree = _started_tree(process)
    send_signal()
    deadline = time.monotonic() + STOP_SECONDS
    while _still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _still_running(tree)
    for proc in tree if left else []:  # no leftovers for the next test, whatever the verdict
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    assert not left, f"still running {STOP_SECONDS} s after the signal: {left}"


@pytest.fixture
def running_start(tmp_path, data_dir, redis_url):
    _skip_demo_seed(data_dir)
    port = free_port()
    log = (tmp_path / "start.log").open("w")
    process = subprocess.Popen([START], env=_start_env(tmp_path, data_dir, redis_url, port, "first"), cwd=PROJECT_ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_ui(process, port)
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()


def test_sigterm_stops_everything_and_a_second_start_on_the_busy_port_starts_nothing(running_start, tmp_path, redis_url):
    process, port = running_start
    second_data = tmp_path / "second_data"
    second_data.mkdir()
    second_env = _start_env(tmp_path, second_data, redis_url, port, "second")
    second = subprocess.run([START], env=second_env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"port {port} is already in use" in second.stderr
    assert not os.path.exists(second_env["DAGSTER_HOME"]) and not any(second_data.iterdir())
    assert process.poll() is None

    _stop_and_check(process, lambda: process.send_signal(signal.SIGTERM))
    assert process.wait(timeout=5) == 128 + signal.SIGTERM


def test_ctrl_c_to_the_process_group_stops_everything(running_start):
    process, _ = running_start
    _stop_and_check(process, lambda: os.killpg(process.pid, signal.SIGINT))
    assert process.wait(timeout=5) == 128 + signal.SIGINT
