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
import hashlib
import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, inspect, text

SCHEMA = "trading"


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


def canonical_row(row) -> bytes:
    return json.dumps([encode_value(v) for v in row], separators=(",", ":"), default=str).encode()


def order_by_columns(pk: list[str], columns: list[str], quote) -> str:
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
            text(f"SELECT {', '.join(quote(c) for c in columns)} FROM {qualified} ORDER BY {order_by_columns(pk, columns, quote)}")
        )
        for row in result:
            digest.update(canonical_row(row) + b"\n")
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
                digest.update(canonical_row(row) + b"\n")
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


def schema_table_bytes(engine: Engine, schema: str = SCHEMA) -> int:
    """On-disk size of the schema's tables without indexes: a dump of them is no larger."""
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')"), {"schema": schema}).scalar())


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
