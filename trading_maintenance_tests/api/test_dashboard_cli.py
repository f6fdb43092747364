"""The live `dashboard` on a pseudo-terminal: it renders, picks up a change on a later refresh, and
Ctrl-C (typed into the terminal) ends it cleanly with exit 0 and no traceback."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time

import pytest

from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config

WAIT_SECONDS = 120
REFRESH_MARKER = "zz_refreshed_result_marker"


class Terminal:
    """A child process on a pseudo-terminal that is its controlling terminal."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(PROJECT_ROOT)
            os.execve(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 220, 0, 0))
        self.output = b""

    def read_until(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while text.encode() not in self.output:
            assert time.monotonic() < deadline, f"{text!r} never shown; output so far:\n{self.output.decode(errors='replace')[-3000:]}"
            if not self.read(0.5):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                assert pid == 0, f"dashboard exited ({status}) before showing {text!r}:\n{self.output.decode(errors='replace')[-3000:]}"

    def read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def exit_code(self) -> int:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            self.read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, "dashboard still running after Ctrl-C"

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def dashboard_env(tmp_path, data_dir, redis_url):
    return {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir)),
            "TRADING_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "MAINTENANCE_ENV_FILE": "", "TERM": "xterm-256color"}


def test_live_dashboard_refreshes_and_ends_on_ctrl_c(dashboard_env, redis_client):
    terminal = Terminal([sys.executable, "-m", "trading_maintenance.cli", "dashboard", "--refresh", "0.5"], dashboard_env)
    try:
        terminal.read_until("Schedules and sensors")
        assert REFRESH_MARKER not in terminal.output.decode(errors="replace")
        redis_client.set(f"maintenance:result:{REFRESH_MARKER}", json.dumps({"task": REFRESH_MARKER, "status": "success"}))
        terminal.read_until(REFRESH_MARKER)
        os.write(terminal.fd, b"\x03")  # Ctrl-C as typed: the terminal sends SIGINT to the dashboard
        code = terminal.exit_code()
        shown = terminal.output.decode(errors="replace")
        assert code == 0, shown[-3000:]
        assert "Traceback" not in shown and "KeyboardInterrupt" not in shown
    finally:
        terminal.close()
