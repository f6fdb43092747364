"""The trading database in and out of backups.

PostgreSQL: `pg_dump --format=custom` of schema `trading` when an installed pg_dump's major version
is at least the server's, run inside an exported snapshot so the row counts and checksums recorded
in the manifest describe exactly the dumped data; otherwise (or when asked) a logical export: the
schema's DDL plus one JSON-lines file per table that restores to the same rows.
SQLite (the embedded file): its online backup API, which copies a consistent snapshot while
writers keep working.

Table checksums: SHA-256 over the rows in primary-key order, each value in a canonical text form,
so the same rows give the same checksum after a restore.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, MetaData, Table, inspect, text
from sqlalchemy.engine import make_url

SCHEMA = "trading"
# pg_dump resets lock_timeout to 0 on its session (PGOPTIONS cannot bound it): a table locked
# elsewhere fails the dump after this wait instead of hanging the backup.
PG_DUMP_LOCK_WAIT_MS = 5000


class DatabaseBackupError(RuntimeError):
    """A database backup or restore step failed; the message never contains a password."""


# --------------------------------------------------------------------------- versions and tools


def server_version(engine: Engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return conn.execute(text("SHOW server_version")).scalar()
        return "sqlite " + sqlite3.sqlite_version


def _major(version: str) -> int:
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
        version = _major(pg_dump_version(os.path.join(folder, "pg_dump")))
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
    if _major(tool) < _major(server):
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
        message = (result.stderr or result.stdout or "").strip()[-2000:]
        for secret in secrets:
            if secret:
                message = message.replace(secret, "***")
        raise DatabaseBackupError(f"{what} failed (exit {result.returncode}): {message}")


# --------------------------------------------------------------------------- canonical values and checksums


def encode_value(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"$f": repr(value)}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    return {"$str": str(value)}


def decode_value(value):
    if not isinstance(value, dict):
        return value
    (tag, raw), = value.items()
    if tag == "$f":
        return float(raw)
    if tag == "$dec":
        return Decimal(raw)
    if tag == "$dt":
        return dt.datetime.fromisoformat(raw)
    if tag == "$date":
        return dt.date.fromisoformat(raw)
    if tag == "$time":
        return dt.time.fromisoformat(raw)
    if tag == "$b64":
        return base64.b64decode(raw)
    return raw


def _canon_row(row) -> bytes:
    return json.dumps([encode_value(v) for v in row], separators=(",", ":"), default=str).encode()


def _order_by(pk: list[str], columns: list[str], quote) -> str:
    return ", ".join(quote(c) for c in (pk or columns))


def table_stats(conn, schema: str | None = SCHEMA) -> dict[str, dict]:
    """{table: {rows, checksum}} for every table of the schema (SQLAlchemy connection)."""
    insp = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    stats = {}
    for table in sorted(insp.get_table_names(schema=schema)):
        columns = [c["name"] for c in insp.get_columns(table, schema=schema)]
        pk = insp.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
        qualified = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
        digest = hashlib.sha256()
        rows = 0
        result = conn.execution_options(stream_results=True).execute(
            text(f"SELECT {', '.join(quote(c) for c in columns)} FROM {qualified} ORDER BY {_order_by(pk, columns, quote)}")
        )
        for row in result:
            digest.update(_canon_row(row) + b"\n")
            rows += 1
        stats[table] = {"rows": rows, "checksum": digest.hexdigest()}
    return stats


def sqlite_table_stats(path: str | Path) -> dict[str, dict]:
    """The same stats for a standalone SQLite file (tables unqualified)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        stats = {}
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in names:
            info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            columns = [r[1] for r in info]
            pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            order = ", ".join(f'"{c}"' for c in (pk or columns))
            digest = hashlib.sha256()
            rows = 0
            for row in conn.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in columns)} FROM "{table}" ORDER BY {order}'):
                digest.update(_canon_row(row) + b"\n")
                rows += 1
            stats[table] = {"rows": rows, "checksum": digest.hexdigest()}
        return stats
    finally:
        conn.close()


# --------------------------------------------------------------------------- backup


def backup_sqlite(source_file: str | Path, out_path: str | Path) -> dict:
    """Copy a consistent snapshot with SQLite's online backup API; returns table stats of the copy."""
    source = sqlite3.connect(f"file:{source_file}?mode=ro", uri=True, timeout=30)
    dest = sqlite3.connect(str(out_path))
    try:
        source.backup(dest, pages=4096)
    finally:
        dest.close()
        source.close()
    return sqlite_table_stats(out_path)


def _pg_logical_export(conn, out_dir: Path, schema: str) -> list[tuple[str, Path]]:
    insp = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    tables = []
    files = []
    for table in sorted(insp.get_table_names(schema=schema)):
        cols = insp.get_columns(table, schema=schema)
        pk = insp.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
        column_defs = []
        for col in cols:
            default = str(col.get("default") or "")
            identity = bool(col.get("identity")) or default.startswith("nextval(")
            column_defs.append(
                {
                    "name": col["name"],
                    "type": col["type"].compile(dialect=conn.dialect),
                    "nullable": bool(col["nullable"]),
                    "identity": identity,
                }
            )
        indexes = [
            {"name": ix["name"], "columns": ix["column_names"], "unique": bool(ix.get("unique"))}
            for ix in insp.get_indexes(table, schema=schema)
            if all(ix.get("column_names") or [None])
        ]
        uniques = [{"name": u["name"], "columns": u["column_names"]} for u in insp.get_unique_constraints(table, schema=schema)]
        tables.append({"name": table, "columns": column_defs, "primary_key": pk, "indexes": indexes, "unique": uniques})
        path = out_dir / f"{table}.jsonl"
        columns = [c["name"] for c in cols]
        result = conn.execution_options(stream_results=True).execute(
            text(f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(schema)}.{quote(table)} ORDER BY {_order_by(pk, columns, quote)}")
        )
        with open(path, "w") as out:
            out.write(json.dumps({"columns": columns}) + "\n")
            for row in result:
                out.write(json.dumps([encode_value(v) for v in row], separators=(",", ":")) + "\n")
        files.append((f"database/logical/{table}.jsonl", path))
    schema_path = out_dir / "schema.json"
    schema_path.write_text(json.dumps({"schema": schema, "tables": tables}, indent=1))
    return [("database/logical/schema.json", schema_path), *files]


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
                files = _pg_logical_export(conn, logical_dir, schema)
    return {"dialect": "postgresql", "method": chosen, "why": why, "files": files, "tables": stats, "versions": versions}


# --------------------------------------------------------------------------- restore


def target_row_counts(engine: Engine, schema: str = SCHEMA) -> dict[str, int]:
    """Rows per table in the target's schema (empty dict: the schema or its tables do not exist)."""
    with engine.connect() as conn:
        insp = inspect(conn)
        if engine.dialect.name == "postgresql" and schema not in insp.get_schema_names():
            return {}
        quote = conn.dialect.identifier_preparer.quote
        return {
            t: conn.execute(text(f"SELECT count(*) FROM {quote(schema)}.{quote(t)}")).scalar()
            for t in insp.get_table_names(schema=schema)
        }


def restore_pg_dump(url: str, dump_path: str | Path, schema: str = SCHEMA, schema_exists: bool = True) -> None:
    """pg_restore in one transaction (a failure leaves the target as it was)."""
    binary = pg_tool("pg_restore")
    if not binary:
        raise DatabaseBackupError("pg_restore is not installed: cannot restore a pg_dump archive here")
    args, env = libpq_args(url)
    parsed = make_url(url)
    cmd = [binary, *args, "-d", parsed.database, "--no-owner", "--no-privileges", "--single-transaction"]
    if schema_exists:
        cmd += ["--clean", "--if-exists"]
    _run([*cmd, str(dump_path)], env, "pg_restore", [str(parsed.password or "")])


def restore_logical(engine: Engine, logical_dir: str | Path, schema: str = SCHEMA) -> dict[str, int]:
    """Recreate schema `trading`'s tables from a logical export in one transaction; rows per table."""
    logical_dir = Path(logical_dir)
    spec = json.loads((logical_dir / "schema.json").read_text())
    counts = {}
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        q_schema = quote(schema)
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {q_schema}"))
        for table in spec["tables"]:
            conn.execute(text(f"DROP TABLE IF EXISTS {q_schema}.{quote(table['name'])} CASCADE"))
            defs = []
            for col in table["columns"]:
                col_type = col["type"]
                if col["identity"]:
                    col_type += " GENERATED BY DEFAULT AS IDENTITY"
                defs.append(f"{quote(col['name'])} {col_type}{'' if col['nullable'] else ' NOT NULL'}")
            if table["primary_key"]:
                defs.append(f"PRIMARY KEY ({', '.join(quote(c) for c in table['primary_key'])})")
            for unique in table.get("unique", []):
                defs.append(f"CONSTRAINT {quote(unique['name'])} UNIQUE ({', '.join(quote(c) for c in unique['columns'])})")
            conn.execute(text(f"CREATE TABLE {q_schema}.{quote(table['name'])} ({', '.join(defs)})"))
            unique_names = {u["name"] for u in table.get("unique", [])}
            for index in table.get("indexes", []):
                if index["name"] in unique_names:
                    continue
                conn.execute(
                    text(
                        f"CREATE {'UNIQUE ' if index['unique'] else ''}INDEX IF NOT EXISTS {quote(index['name'])} "
                        f"ON {q_schema}.{quote(table['name'])} ({', '.join(quote(c) for c in index['columns'])})"
                    )
                )
        meta = MetaData(schema=schema)
        for table in spec["tables"]:
            target = Table(table["name"], meta, autoload_with=conn)
            rows = 0
            with open(logical_dir / f"{table['name']}.jsonl") as handle:
                columns = json.loads(handle.readline())["columns"]
                batch = []
                for line in handle:
                    batch.append(dict(zip(columns, (decode_value(v) for v in json.loads(line)))))
                    if len(batch) >= 1000:
                        conn.execute(target.insert(), batch)
                        rows += len(batch)
                        batch = []
                if batch:
                    conn.execute(target.insert(), batch)
                    rows += len(batch)
            counts[table["name"]] = rows
            for col in table["columns"]:
                if col["identity"] and rows:
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence(:t, :c), (SELECT max({quote(col['name'])}) FROM {q_schema}.{quote(table['name'])}))"
                        ),
                        {"t": f"{schema}.{table['name']}", "c": col["name"]},
                    )
    return counts


def restore_sqlite_file(snapshot: str | Path, target_file: str | Path) -> None:
    """Replace the SQLite file's content through the online backup API (one transaction on the
    target, so concurrent readers see either the old or the restored database, never a mix)."""
    target_file = Path(target_file)
    target_file.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    dest = sqlite3.connect(str(target_file), timeout=30)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
