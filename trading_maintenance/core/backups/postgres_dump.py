"""PostgreSQL backups: pg_dump/pg_restore (the newest installed), or the logical export when
pg_dump is older than the server; pg_restore runs only on a dump whose table of contents holds
nothing but schema `trading`'s tables."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from trading_maintenance.core.backups.database import SCHEMA, DatabaseBackupError, UntrustedDumpError, server_version, table_stats
from trading_maintenance.core.backups.database_logical import pg_logical_export
from trading_maintenance.core.database.session_options import DEFAULT_LOCK_TIMEOUT_MS, postgres_session_options

# pg_dump resets lock_timeout to 0 on its session (PGOPTIONS cannot bound it): a table locked
# elsewhere fails the dump after this wait instead of hanging the backup.
PG_DUMP_LOCK_WAIT_MS = 5000
LOCK_WATCH_INTERVAL_S = 0.2
# pg_restore table-of-contents entry types a dump of schema `trading` may hold; anything else
# (functions, triggers, extensions, other schemas) is refused before pg_restore runs.
PG_TOC_TYPES = ("SEQUENCE OWNED BY", "SEQUENCE SET", "FK CONSTRAINT", "TABLE DATA", "CONSTRAINT", "SEQUENCE", "DEFAULT",
                "SCHEMA", "TABLE", "INDEX", "COMMENT")


def major_version(version: str) -> int:
    match = re.search(r"(\d+)", version or "")
    return int(match.group(1)) if match else 0


def _pg_bin_dirs() -> list[str]:
    """Folders holding pg_dump and pg_restore: the PATH's, and the one bundled with pgserver
    (PostgreSQL 16) when that package is installed."""
    dirs = []
    found = shutil.which("pg_dump")
    if found and shutil.which("pg_restore"):
        dirs.append(os.path.dirname(found))  # not realpath: Debian's pg_dump is a wrapper link
    try:
        import pgserver  # noqa: F401 - only its bundled binaries are used

        bundled = os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin")
        if os.path.exists(os.path.join(bundled, "pg_dump")) and os.path.exists(os.path.join(bundled, "pg_restore")):
            dirs.append(bundled)
    except ImportError:
        pass
    return dirs


@functools.lru_cache(maxsize=1)
def _best_pg_bin_dir() -> str | None:
    """The folder whose pg_dump is newest: a newer pg_dump dumps older servers, never the reverse."""
    best, best_version = None, -1
    for folder in _pg_bin_dirs():
        version = major_version(pg_dump_version(os.path.join(folder, "pg_dump")))
        if version > best_version:
            best, best_version = folder, version
    return best


def pg_tool(name: str) -> str | None:
    folder = _best_pg_bin_dir()
    return os.path.join(folder, name) if folder else None


def pg_dump_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else ""


def choose_pg_method(server: str, requested: str = "auto") -> tuple[str, str]:
    """('pg_dump' | 'logical', why) for a PostgreSQL server version."""
    if requested == "logical":
        return "logical", "logical export requested"
    binary = pg_tool("pg_dump")
    if not binary or not pg_tool("pg_restore"):
        if requested == "pg_dump":
            raise DatabaseBackupError("pg_dump requested but pg_dump/pg_restore are not installed")
        return "logical", "pg_dump/pg_restore not installed"
    tool = pg_dump_version(binary)
    if major_version(tool) < major_version(server):
        if requested == "pg_dump":
            raise DatabaseBackupError(f"pg_dump {tool} is older than the server ({server})")
        return "logical", f"pg_dump {tool} is older than server {server}"
    return "pg_dump", f"pg_dump {tool} for server {server}"


def libpq_args(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore; the password goes through PGPASSWORD, not argv."""
    parsed = make_url(url)
    # A Unix-socket URL (postgresql://user@/db?host=/run/postgresql) carries its folder in the query.
    socket_dir = parsed.query.get("host")
    host = parsed.host or (socket_dir if isinstance(socket_dir, str) else None) or "127.0.0.1"
    args = ["-h", host, "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def _run(cmd: list[str], env: dict, what: str, secrets: list[str]) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        _raise_failed(what, result.returncode, result.stderr or result.stdout, secrets)


def backup_postgres(engine: Engine, url: str, work_dir: str | Path, method: str = "auto", schema: str = SCHEMA) -> dict:
    """Dump schema `trading`; returns {method, why, files: [(member, path)], tables, versions}."""
    work_dir = Path(work_dir)
    server = server_version(engine)
    chosen, why = choose_pg_method(server, method)
    versions = {"postgresql": server}
    with engine.connect() as conn:
        if schema not in inspect(conn).get_schema_names():
            return {"dialect": "postgresql", "method": "none", "why": f"schema {schema} does not exist", "files": [],
                    "tables": {}, "versions": versions}
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            stats = table_stats(conn, schema)
            if chosen == "pg_dump":
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
                binary = pg_tool("pg_dump")
                versions["pg_dump"] = pg_dump_version(binary)
                out = work_dir / "trading.pgdump"
                args, env = libpq_args(url)
                parsed = make_url(url)
                _run(
                    [binary, *args, "-d", parsed.database, "--format=custom", f"--schema={schema}", "--no-owner",
                     "--no-privileges", f"--snapshot={snapshot}", f"--lock-wait-timeout={PG_DUMP_LOCK_WAIT_MS}ms", "-f", str(out)],
                    env, "pg_dump", [str(parsed.password or "")],
                )
                files = [("database/trading.pgdump", out)]
            else:
                logical_dir = work_dir / "logical"
                logical_dir.mkdir(parents=True, exist_ok=True)
                files = pg_logical_export(conn, logical_dir, schema)
    return {"dialect": "postgresql", "method": chosen, "why": why, "files": files, "tables": stats, "versions": versions}


def pg_dump_toc(dump_path: str | Path, schema: str = SCHEMA) -> list[str]:
    """The table of contents of a custom-format dump, refused unless every entry is a table-level
    object of `schema` (or the schema itself). Returns the entries ("TYPE name")."""
    binary = pg_tool("pg_restore")
    if not binary:
        raise DatabaseBackupError("pg_restore is not installed: cannot restore a pg_dump archive here")
    result = subprocess.run([binary, "--list", str(dump_path)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise UntrustedDumpError(f"the dump cannot be read by pg_restore {pg_dump_version(binary)}: "
                                 f"{(result.stderr or '').strip()[-300:]}")
    entries = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        match = re.match(r"^\d+; \d+ \d+ (?P<rest>.*)$", line)
        kind = next((t for t in PG_TOC_TYPES if match and match["rest"].startswith(t + " ")), None)
        if kind is None:
            raise UntrustedDumpError(f"the dump holds an entry of a kind a restore never runs: {line[:120]!r}: refused")
        words = match["rest"][len(kind) + 1:].split(" ")
        owner_schema, name = (words[0], words[1] if len(words) > 1 else "")
        in_schema = owner_schema == schema or (kind == "SCHEMA" and owner_schema == "-" and name == schema)
        if not in_schema:
            raise UntrustedDumpError(f"the dump holds {kind} {' '.join(words[:2])!r} outside schema {schema}: refused")
        entries.append(f"{kind} {name}")
    return entries


def check_pg_restore_can_read(dump_version: str) -> str:
    """pg_restore reads dumps of its own major version or older; returns its version."""
    binary = pg_tool("pg_restore")
    if not binary:
        raise DatabaseBackupError("pg_restore is not installed: cannot restore a pg_dump archive here")
    version = pg_dump_version(binary)
    if major_version(version) < major_version(dump_version):
        raise DatabaseBackupError(f"pg_restore {version} cannot read a dump made by pg_dump {dump_version}")
    return version


def restore_pg_dump(url: str, dump_path: str | Path, schema: str = SCHEMA, schema_exists: bool = True,
                    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS) -> None:
    """pg_restore in one transaction (a failure leaves the target as it was); a table locked elsewhere
    fails it after lock_timeout_ms instead of hanging the restore."""
    pg_dump_toc(dump_path, schema)
    binary = pg_tool("pg_restore")
    args, env = libpq_args(url)
    parsed = make_url(url)
    cmd = [binary, *args, "-d", parsed.database, "--no-owner", "--no-privileges", "--single-transaction"]
    if schema_exists:
        cmd += ["--clean", "--if-exists"]
    _run_lock_bounded([*cmd, str(dump_path)], env, "pg_restore", [str(parsed.password or "")], url, lock_timeout_ms)


def _run_lock_bounded(cmd: list[str], env: dict, what: str, secrets: list[str], url: str, lock_timeout_ms: int) -> None:
    """Run a libpq tool whose own script resets lock_timeout to 0 (pg_restore writes `SET lock_timeout = 0`
    before anything else, so PGOPTIONS cannot bound it): a watcher session cancels its statement once it
    has waited for one lock longer than lock_timeout_ms."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    application = f"trading-maintenance-{what}-{uuid.uuid4().hex[:12]}"
    env = {**env, "PGAPPNAME": application}
    watcher = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                            connect_args={"connect_timeout": 5, "options": postgres_session_options(lock_timeout_ms)})
    waiting_since: dict[tuple, float] = {}
    cancelled = False
    holders: list[int] = []
    try:
        with watcher.connect() as conn:
            process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while process.poll() is None:
                rows = conn.execute(text(
                    "SELECT pid, query_start, wait_event_type = 'Lock', pg_blocking_pids(pid) FROM pg_stat_activity "
                    "WHERE application_name = :application"), {"application": application}).all()
                now = time.monotonic()
                for pid, query_start, on_lock, blockers in rows:
                    if not on_lock:
                        waiting_since.pop((pid, query_start), None)
                        continue
                    since = waiting_since.setdefault((pid, query_start), now)
                    if (now - since) * 1000 >= lock_timeout_ms and not cancelled:
                        conn.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
                        cancelled, holders = True, list(blockers or [])
                try:
                    process.wait(timeout=LOCK_WATCH_INTERVAL_S)
                except subprocess.TimeoutExpired:
                    pass
            out, err = process.communicate()
    finally:
        watcher.dispose()
    if process.returncode != 0:
        if cancelled:
            raise DatabaseBackupError(f"{what} waited more than {lock_timeout_ms} ms for a lock held by another session "
                                      f"(pids {holders}): cancelled; nothing was changed (one transaction)")
        _raise_failed(what, process.returncode, err or out, secrets)


def _raise_failed(what: str, returncode: int, output: str, secrets: list[str]) -> None:
    message = (output or "").strip()[-2000:]
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    raise DatabaseBackupError(f"{what} failed (exit {returncode}): {message}")
