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


IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PG_TYPE_NAMES = (
    "SMALLINT|INTEGER|BIGINT|REAL|DOUBLE PRECISION|FLOAT|BOOLEAN|TEXT|DATE|BYTEA|JSONB|JSON|UUID|INTERVAL|INET|CIDR"
    "|NUMERIC|DECIMAL|CHARACTER VARYING|VARCHAR|CHARACTER|CHAR|TIMESTAMP|TIME"
)
# A column type from a backup is pasted into CREATE TABLE, so only these type names (with an
# optional precision/scale, time zone and array suffix) are ever accepted.
PG_COLUMN_TYPE = re.compile(
    rf"^(?:{_PG_TYPE_NAMES})(?:\(\d{{1,4}}(?:, ?\d{{1,4}})?\))?(?: WITH(?:OUT)? TIME ZONE)?(?:\[\])?$", re.IGNORECASE
)
SQLITE_COLUMN_TYPE = re.compile(
    rf"^(?:{_PG_TYPE_NAMES}|DATETIME|BLOB|NUMBER|)(?:\(\d{{1,4}}(?:, ?\d{{1,4}})?\))?$", re.IGNORECASE
)
# pg_restore table-of-contents entry types a dump of schema `trading` may hold; anything else
# (functions, triggers, extensions, other schemas) is refused before pg_restore runs.
PG_TOC_TYPES = ("SEQUENCE OWNED BY", "SEQUENCE SET", "FK CONSTRAINT", "TABLE DATA", "CONSTRAINT", "SEQUENCE", "DEFAULT",
                "SCHEMA", "TABLE", "INDEX", "COMMENT")


class DatabaseBackupError(RuntimeError):
    """A database backup or restore step failed; the message never contains a password."""


class UntrustedDumpError(DatabaseBackupError):
    """The dump in a backup holds something a restore must not run; the message names the field."""


def check_identifier(value, field: str) -> str:
    """An identifier from a backup: a plain name of at most 63 characters (it is quoted as well)."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise UntrustedDumpError(f"{field} {str(value)[:80]!r} is not a plain identifier: refused")
    return value


def sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
            info = conn.execute(f"PRAGMA table_info({sqlite_quote(table)})").fetchall()
            columns = [r[1] for r in info]
            pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            order = ", ".join(sqlite_quote(c) for c in (pk or columns))
            digest = hashlib.sha256()
            rows = 0
            for row in conn.execute(f"SELECT {', '.join(sqlite_quote(c) for c in columns)} FROM {sqlite_quote(table)} ORDER BY {order}"):
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
    if _major(version) < _major(dump_version):
        raise DatabaseBackupError(f"pg_restore {version} cannot read a dump made by pg_dump {dump_version}")
    return version


def restore_pg_dump(url: str, dump_path: str | Path, schema: str = SCHEMA, schema_exists: bool = True) -> None:
    """pg_restore in one transaction (a failure leaves the target as it was)."""
    pg_dump_toc(dump_path, schema)
    binary = pg_tool("pg_restore")
    args, env = libpq_args(url)
    parsed = make_url(url)
    cmd = [binary, *args, "-d", parsed.database, "--no-owner", "--no-privileges", "--single-transaction"]
    if schema_exists:
        cmd += ["--clean", "--if-exists"]
    _run([*cmd, str(dump_path)], env, "pg_restore", [str(parsed.password or "")])


def validate_logical_spec(logical_dir: str | Path) -> dict:
    """The logical export's schema.json, checked field by field before any of it reaches SQL.

    Names must be plain identifiers (they are quoted too), column types come from PG_COLUMN_TYPE,
    flags are booleans, and each table's data file exists and lists exactly the table's columns.
    """
    logical_dir = Path(logical_dir)
    try:
        spec = json.loads((logical_dir / "schema.json").read_text())
    except (OSError, ValueError):
        raise UntrustedDumpError("database/logical/schema.json is missing or not valid JSON") from None
    tables = spec.get("tables") if isinstance(spec, dict) else None
    if not isinstance(tables, list):
        raise UntrustedDumpError("schema.json field 'tables' is not a list")
    seen = set()
    for t_index, table in enumerate(tables):
        where = f"schema.json tables[{t_index}]"
        if not isinstance(table, dict):
            raise UntrustedDumpError(f"{where} is not an object")
        name = check_identifier(table.get("name"), f"{where}.name")
        if name in seen:
            raise UntrustedDumpError(f"{where}.name {name!r} appears twice")
        seen.add(name)
        columns = table.get("columns")
        if not isinstance(columns, list) or not columns:
            raise UntrustedDumpError(f"{where}.columns is not a non-empty list")
        names = []
        for c_index, col in enumerate(columns):
            field = f"{where}.columns[{c_index}]"
            if not isinstance(col, dict):
                raise UntrustedDumpError(f"{field} is not an object")
            names.append(check_identifier(col.get("name"), f"{field}.name"))
            if not isinstance(col.get("type"), str) or not PG_COLUMN_TYPE.match(col["type"]):
                raise UntrustedDumpError(f"{field}.type {str(col.get('type'))[:80]!r} is not an allowed column type: refused")
            for flag in ("nullable", "identity"):
                if not isinstance(col.get(flag), bool):
                    raise UntrustedDumpError(f"{field}.{flag} is not true or false")
        for key in ("primary_key",):
            if not isinstance(table.get(key), list) or any(c not in names for c in table[key]):
                raise UntrustedDumpError(f"{where}.{key} names columns the table does not have")
        for key in ("unique", "indexes"):
            entries = table.get(key, [])
            if not isinstance(entries, list):
                raise UntrustedDumpError(f"{where}.{key} is not a list")
            for i_index, entry in enumerate(entries):
                field = f"{where}.{key}[{i_index}]"
                if not isinstance(entry, dict) or not isinstance(entry.get("columns"), list) or not entry["columns"]:
                    raise UntrustedDumpError(f"{field} has no column list")
                check_identifier(entry.get("name"), f"{field}.name")
                if any(c not in names for c in entry["columns"]):
                    raise UntrustedDumpError(f"{field} names columns the table does not have")
                if key == "indexes" and not isinstance(entry.get("unique"), bool):
                    raise UntrustedDumpError(f"{field}.unique is not true or false")
        data_file = logical_dir / f"{name}.jsonl"
        try:
            with open(data_file) as handle:
                header = json.loads(handle.readline())
        except (OSError, ValueError):
            raise UntrustedDumpError(f"database/logical/{name}.jsonl is missing or has no column header") from None
        if not isinstance(header, dict) or header.get("columns") != names:
            raise UntrustedDumpError(f"database/logical/{name}.jsonl lists other columns than schema.json")
    return {"tables": tables}


def restore_logical(engine: Engine, logical_dir: str | Path, schema: str = SCHEMA) -> dict[str, int]:
    """Recreate schema `trading`'s tables from a validated logical export in one transaction.

    Only schema `trading` is touched: every name is qualified with it, the search path is set to it
    alone, and tables are dropped without CASCADE, so an object elsewhere that depends on them
    makes the restore fail (and roll back) instead of being dropped with them.
    """
    logical_dir = Path(logical_dir)
    spec = validate_logical_spec(logical_dir)
    counts = {}
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        q_schema = quote(schema)
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {q_schema}"))
        conn.execute(text(f"SET LOCAL search_path TO {q_schema}"))
        if spec["tables"]:
            conn.execute(text("DROP TABLE IF EXISTS " + ", ".join(f"{q_schema}.{quote(t['name'])}" for t in spec["tables"])))
        for table in spec["tables"]:
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
                    values = json.loads(line)
                    if not isinstance(values, list) or len(values) != len(columns):
                        raise UntrustedDumpError(f"database/logical/{table['name']}.jsonl line {rows + len(batch) + 2} "
                                                 "does not hold one value per column")
                    batch.append(dict(zip(columns, (decode_value(v) for v in values))))
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
                        {"t": f"{q_schema}.{quote(table['name'])}", "c": col["name"]},
                    )
    return counts


def validate_sqlite_snapshot(path: str | Path) -> None:
    """A SQLite file from a backup holds only intact tables and indexes with plain names and known
    column types: no views or triggers, which would run later inside the platform's own writes."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UntrustedDumpError(f"the SQLite snapshot cannot be opened: {exc}") from None
    try:
        try:
            check = conn.execute("PRAGMA quick_check").fetchall()
            objects = conn.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError as exc:
            raise UntrustedDumpError(f"the SQLite snapshot is not a valid database: {exc}") from None
        if check != [("ok",)]:
            raise UntrustedDumpError(f"the SQLite snapshot fails its integrity check: {str(check[:3])[:200]}")
        for kind, name, table in objects:
            internal = name.startswith("sqlite_autoindex_") or name in ("sqlite_sequence", "sqlite_stat1")
            if kind not in ("table", "index"):
                raise UntrustedDumpError(f"the SQLite snapshot holds a {kind} {str(name)[:80]!r}: refused")
            if not internal:
                check_identifier(name, f"SQLite {kind} name")
                check_identifier(table, f"SQLite table of {kind} {name}")
            if kind == "table" and not internal:
                for column in conn.execute(f"PRAGMA table_xinfo({sqlite_quote(name)})").fetchall():
                    check_identifier(column[1], f"SQLite column of {name}")
                    if column[6] not in (0, 1) or not SQLITE_COLUMN_TYPE.match(column[2] or ""):
                        raise UntrustedDumpError(f"SQLite column {name}.{column[1]} has type {str(column[2])[:60]!r}: refused")
    finally:
        conn.close()


def restore_sqlite_file(snapshot: str | Path, target_file: str | Path) -> None:
    """Replace the SQLite file's content through the online backup API (one transaction on the
    target, so concurrent readers see either the old or the restored database, never a mix)."""
    validate_sqlite_snapshot(snapshot)
    target_file = Path(target_file)
    target_file.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    dest = sqlite3.connect(str(target_file), timeout=30)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
