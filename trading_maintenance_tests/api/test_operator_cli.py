"""Operator commands in a real subprocess: restart with and without a configured command, services,
metrics, output to a pipe in full; the project's .env reaches the CLI, the shell's variables win."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config

CLI = [sys.executable, "-m", "trading_maintenance.cli"]
LONG_NAME = "market_data_collector_for_every_exchange_and_every_asset_class_in_the_platform"


class _Health(BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"status": "ok" if _Health.healthy else "down"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/health"
    server.shutdown()


def _env(tmp_path, data_dir, redis_url, **sections):
    return {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir, **sections)),
            "TRADING_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "MAINTENANCE_ENV_FILE": ""}


def _run(args, env):
    return subprocess.run(CLI + args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_restart_without_a_command_is_refused_with_exit_2(tmp_path, data_dir, redis_url, health_server):
    env = _env(tmp_path, data_dir, redis_url, services=[{"name": "risk_manager", "url": health_server}])
    refused = _run(["restart", "--service", "risk_manager"], env)
    assert refused.returncode == 2
    assert "no restart_command" in refused.stderr and "Traceback" not in refused.stderr
    unknown = _run(["restart", "--service", "nope"], env)
    assert unknown.returncode == 2 and "risk_manager" in unknown.stderr


def test_restart_runs_the_command_and_waits_for_health(tmp_path, data_dir, redis_url, health_server):
    marker = tmp_path / "restarted"
    command = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x'); print('restarted ok')"]
    env = _env(tmp_path, data_dir, redis_url, services=[{"name": "risk_manager", "url": health_server, "restart_command": command}])
    done = _run(["restart", "--service", "risk_manager", "--json"], env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert marker.exists() and answer["exit_code"] == 0 and "restarted ok" in answer["output"] and answer["healthy"]


def test_restart_reports_a_failing_command(tmp_path, data_dir, redis_url, health_server):
    env = _env(tmp_path, data_dir, redis_url,
               services=[{"name": "risk_manager", "url": health_server, "restart_command": f"{sys.executable} -c 'raise SystemExit(4)'"}])
    failed = _run(["restart", "--service", "risk_manager"], env)
    assert failed.returncode == 1 and "exited 4" in failed.stdout


def test_services_to_a_pipe_shows_full_names_and_latency(tmp_path, data_dir, redis_url, health_server):
    env = _env(tmp_path, data_dir, redis_url, services=[{"name": LONG_NAME, "url": health_server}])
    table = _run(["services"], env)
    assert table.returncode == 0, table.stderr
    assert LONG_NAME in table.stdout and "…" not in table.stdout
    rows = json.loads(_run(["services", "--json"], env).stdout)
    assert rows[0]["name"] == LONG_NAME and rows[0]["healthy"] and rows[0]["latency_ms"] is not None


def test_metrics_json_and_unknown_task(tmp_path, data_dir, redis_url):
    env = _env(tmp_path, data_dir, redis_url)
    answer = _run(["metrics", "--task", "log_rotation", "--json"], env)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)[0]["windows"][1]["days"] == 30
    unknown = _run(["metrics", "--task", "nope"], env)
    assert unknown.returncode == 2 and "log_rotation" in unknown.stderr


def test_the_projects_env_file_reaches_the_cli_and_the_shell_wins(tmp_path, data_dir, redis_url):
    other_data = tmp_path / "from_env_file"
    env_file = tmp_path / ".env"
    env_file.write_text(f"TRADING_DATA_DIR={other_data}\nLOG_LEVEL=debug\n")
    env = _env(tmp_path, data_dir, redis_url)
    env["MAINTENANCE_ENV_FILE"] = str(env_file)
    shell_wins = _run(["status", "--json"], env)
    assert json.loads(shell_wins.stdout)["data_dir"] == str(data_dir)
    del env["TRADING_DATA_DIR"]
    from_file = _run(["status", "--json"], env)
    assert json.loads(from_file.stdout)["data_dir"] == str(other_data), from_file.stderr


def test_demo_env_file_keeps_other_lines_and_never_replaces_another_broker(tmp_path):
    from trading_maintenance.demo.env_file import DEMO_BROKER_ENV, OtherBrokerConfigured, write_demo_env

    path = tmp_path / ".env"
    path.write_text("REDIS_URL=redis://example:6379/0\nALPACA_API_KEY=old\n")
    write_demo_env(path)
    write_demo_env(path)
    text = path.read_text()
    assert "REDIS_URL=redis://example:6379/0" in text and "ALPACA_API_KEY=old" not in text
    assert text.count(f"ALPACA_BASE_URL={DEMO_BROKER_ENV['ALPACA_BASE_URL']}") == 1
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("ALPACA_BASE_URL=https://api.alpaca.markets\n")
    with pytest.raises(OtherBrokerConfigured):
        write_demo_env(path)
    assert path.read_text() == "ALPACA_BASE_URL=https://api.alpaca.markets\n"
