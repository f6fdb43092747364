"""Database maintenance against a real engine: measure, VACUUM/ANALYZE/REINDEX, purge with archive.

No Dagster. VACUUM, REINDEX CONCURRENTLY and DROP INDEX CONCURRENTLY run outside a transaction
(AUTOCOMMIT). Purges archive to parquet, verify the archive, then delete in batches, each batch in
its own transaction with lock and statement timeouts, deleting only ids the verified archive holds.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, create_engine, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from trading_maintenance.core.common.atomic import fsync_dir, remove_dead_temporaries, temporary_name_for
from trading_maintenance.core.database.maintenance import (
    PURGE_TARGETS,
    Action,
    IndexStats,
    PurgeTarget,
    TableStats,
    batches,
    estimate_index_bloat,
    id_checksum,
)
from trading_maintenance.core.trading import schema as ts

TABLES = ("orders", "fills", "positions", "daily_performance")
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
CANCEL_WAIT_SECONDS = 30.0


# -- interruption and lock diagnostics ----------------------------------------------------------
_sessions_by_thread: dict[int, set[int]] = {}
_sessions_lock = threading.Lock()


def _on_checkout(dbapi_connection, record, _proxy) -> None:
    pid = dbapi_connection.get_backend_pid() if hasattr(dbapi_connection, "get_backend_pid") else None
    if pid is None:
        info = getattr(dbapi_connection, "info", None)
        pid = getattr(info, "backend_pid", None)
    if pid is not None:
        record.info["backend_pid"] = (threading.get_ident(), pid)
        with _sessions_lock:
            _sessions_by_thread.setdefault(threading.get_ident(), set()).add(pid)


def _on_checkin(_dbapi_connection, record) -> None:
    owner = record.info.pop("backend_pid", None)
    if owner is not None:
        with _sessions_lock:
            _sessions_by_thread.get(owner[0], set()).discard(owner[1])


def _track_sessions(engine) -> None:
    if not event.contains(engine, "checkout", _on_checkout):
        event.listen(engine, "checkout", _on_checkout)
        event.listen(engine, "checkin", _on_checkin)


def cancel_backends(engine, pids) -> list[int]:
    """pg_cancel_backend for each pid, from a session of its own (the pool may be the one stuck)."""
    pids = sorted(pids)
    if not pids:
        return []
    side = create_engine(engine.url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with side.connect() as conn:
            return [pid for pid in pids if conn.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid}).scalar()]
    finally:
        side.dispose()


def run_interruptible(engine, fn, *args, **kwargs):
    """fn(*args, **kwargs) in a worker thread while this thread waits where signals are delivered.

    A blocking libpq call does not return to Python when the run is terminated, so the termination
    (Dagster's DagsterExecutionInterruptedError, Ctrl-C) is caught here: the worker's in-flight
    statements are cancelled on the server until the worker stops, then the interruption goes on.
    """
    if engine.dialect.name != "postgresql":
        return fn(*args, **kwargs)
    _track_sessions(engine)
    outcome: dict = {}
    finished = threading.Event()  # not Thread.join: an interrupted join can mark a live thread as stopped

    def work() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=work, name=f"db-{getattr(fn, '__name__', 'work')}", daemon=True)
    worker.start()
    try:
        while not finished.wait(0.2):
            pass
    except BaseException:
        waited = 0.0
        while not finished.is_set() and waited < CANCEL_WAIT_SECONDS:
            with _sessions_lock:
                pids = set(_sessions_by_thread.get(worker.ident, ()))
            try:
                cancel_backends(engine, pids)
            except DBAPIError:
                pass  # the server is unreachable: its statements end with the connection anyway
            finished.wait(0.5)
            waited += 0.5
        raise
    finally:
        with _sessions_lock:
            _sessions_by_thread.pop(worker.ident, None)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def lock_holders(engine, schema: str = "trading") -> list[str]:
    """Other sessions' granted locks on the schema's tables and indexes, in words."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("""
                SELECT n.nspname || '.' || c.relname AS relation, l.mode, l.pid, a.application_name,
                       EXTRACT(EPOCH FROM now() - a.xact_start)::int AS seconds
                FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.granted AND n.nspname = :schema AND l.pid <> pg_backend_pid()
                  AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock')
                ORDER BY relation, l.pid"""), {"schema": schema}).all()
    except DBAPIError:
        return []
    return [f"{r.relation} {r.mode} held by pid {r.pid}" + (f" ({r.application_name})" if r.application_name else "")
            + (f" for {r.seconds} s" if r.seconds is not None else "") for r in rows]


def explain_db_error(engine, exc: BaseException, lock_timeout_ms: int, statement_timeout_ms: int) -> str:
    """A one-line reason; a lock or statement timeout names the locks other sessions hold."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    first = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if code == LOCK_NOT_AVAILABLE:
        reason = f"no lock within lock_timeout {lock_timeout_ms} ms"
    elif code == QUERY_CANCELED and "statement timeout" in first:
        reason = f"statement ran longer than statement_timeout {statement_timeout_ms} ms"
    else:
        return f"{type(getattr(exc, 'orig', exc)).__name__}: {first}"
    holders = lock_holders(engine) if engine.dialect.name == "postgresql" else []
    return reason + (": " + "; ".join(holders) if holders else "")


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


# -- PostgreSQL ------------------------------------------------------------------------------------
def measure_postgres(engine, schema: str = "trading") -> tuple[list[TableStats], list[IndexStats], int]:
    """Tables, indexes and the database's transaction-ID age."""
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT s.schemaname || '.' || s.relname AS name, s.n_live_tup, s.n_dead_tup,
                   pg_total_relation_size(s.relid) AS total_bytes, pg_relation_size(s.relid) AS table_bytes,
                   pg_indexes_size(s.relid) AS index_bytes, s.last_vacuum, s.last_autovacuum, s.last_analyze,
                   s.last_autoanalyze, age(c.relfrozenxid) AS xid_age
            FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
            WHERE s.schemaname = :schema ORDER BY s.relname"""), {"schema": schema}).mappings().all()
        tables = [TableStats(r["name"], int(r["n_live_tup"]), int(r["n_dead_tup"]), int(r["total_bytes"]), int(r["table_bytes"]),
                             int(r["index_bytes"]), _iso(r["last_vacuum"]), _iso(r["last_autovacuum"]), _iso(r["last_analyze"]),
                             _iso(r["last_autoanalyze"]), int(r["xid_age"])) for r in rows]
        idx = conn.execute(text("""
            SELECT n.nspname || '.' || ic.relname AS name, n.nspname || '.' || tc.relname AS table_name,
                   pg_relation_size(i.indexrelid) AS bytes, GREATEST(tc.reltuples, 0) AS tuples, i.indisvalid AS valid,
                   COALESCE((SELECT sum(st.avg_width) FROM pg_attribute a JOIN pg_stats st
                               ON st.schemaname = n.nspname AND st.tablename = tc.relname AND st.attname = a.attname
                             WHERE a.attrelid = tc.oid AND a.attnum = ANY(i.indkey)), 8) AS width
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = tc.relnamespace WHERE n.nspname = :schema ORDER BY ic.relname"""),
            {"schema": schema}).mappings().all()
        indexes = [IndexStats(r["name"], r["table_name"], int(r["bytes"]), float(r["tuples"]), float(r["width"]), bool(r["valid"]),
                              estimate_index_bloat(int(r["bytes"]), float(r["tuples"]), float(r["width"]))) for r in idx]
        xid_age = int(conn.execute(text("SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()")).scalar_one())
    return tables, indexes, xid_age


def _quote(qualified: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in qualified.split(".", 1))


def apply_postgres(engine, actions: list[Action], lock_timeout_ms: int, statement_timeout_ms: int) -> list[dict]:
    """Run each action in AUTOCOMMIT; a failed action is recorded and the others still run."""
    outcomes = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"SET lock_timeout = {int(lock_timeout_ms)}"))
        conn.execute(text(f"SET statement_timeout = {int(statement_timeout_ms)}"))
        for action in actions:
            sql = {
                "vacuum_analyze": f"VACUUM (ANALYZE) {_quote(action.target)}",
                "analyze": f"ANALYZE {_quote(action.target)}",
                "reindex": f"REINDEX INDEX CONCURRENTLY {_quote(action.target)}",
                "drop_invalid_index": f"DROP INDEX CONCURRENTLY IF EXISTS {_quote(action.target)}",
            }[action.kind]
            started = datetime.now()
            try:
                conn.execute(text(sql))
                status = "ok"
            except Exception as exc:  # noqa: BLE001 - reported per action
                status = f"failed: {explain_db_error(engine, exc, lock_timeout_ms, statement_timeout_ms)}"
            outcomes.append({**action.as_dict(), "sql": sql, "status": status,
                             "seconds": round((datetime.now() - started).total_seconds(), 3)})
    return outcomes


# -- SQLite ---------------------------------------------------------------------------------------
def sqlite_size(engine) -> dict:
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA trading.page_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA trading.page_size").scalar_one()
        free = conn.exec_driver_sql("PRAGMA trading.freelist_count").scalar_one()
    return {"bytes": pages * size, "free_pages": free, "page_size": size}


def maintain_sqlite(engine) -> list[dict]:
    """integrity_check, ANALYZE, REINDEX, VACUUM on the attached trading file."""
    outcomes = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        check = [r[0] for r in conn.exec_driver_sql("PRAGMA trading.integrity_check").fetchall()]
        outcomes.append({"kind": "integrity_check", "target": "trading", "status": "ok" if check == ["ok"] else "failed: " + "; ".join(check[:5])})
        for kind, sql in (("analyze", "ANALYZE trading"), ("reindex", "REINDEX trading.orders"), ("reindex", "REINDEX trading.fills"),
                          ("reindex", "REINDEX trading.positions"), ("vacuum", "VACUUM trading")):
            try:
                conn.exec_driver_sql(sql)
                status = "ok"
            except Exception as exc:  # noqa: BLE001
                status = f"failed: {type(exc).__name__}: {exc}"
            outcomes.append({"kind": kind, "target": sql.split()[-1], "sql": sql, "status": status})
    return outcomes


# -- purge ----------------------------------------------------------------------------------------
@dataclass
class PurgeOutcome:
    table: str
    selected: int = 0
    archived: int = 0
    archive_path: str = ""
    archive_checksum: str = ""
    verified: bool = False
    deleted: int = 0
    batches_done: int = 0
    remaining_old: int = 0
    error: str = ""
    dead_temporaries_removed: int = 0  # archives a crashed earlier purge left half-written
    deleted_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("deleted_ids")
        return d


def _old_rows_query(target: PurgeTarget, cutoff: datetime):
    table = getattr(ts, target.table)
    column = table.c[target.time_column]
    cond = [column < cutoff]
    if target.only_final:
        cond.append(table.c.status.in_(ts.ORDER_FINAL_STATUSES))
    if target.only_closed:
        cond.append(table.c.status == "closed")
    return table, and_(*cond)


def _arrow_value(value):
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)  # exact: money is never turned into a float
    return value


def archive_rows(engine, target: PurgeTarget, cutoff: datetime, archive_dir: Path, stamp: str) -> tuple[list[int], Path | None]:
    """Write the rows to purge to parquet (temporary name with process id and host, fsync, rename,
    fsync the folder) and return their ids."""
    table, where = _old_rows_query(target, cutoff)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(table).where(where).order_by(table.c.id)).mappings()]
    if not rows:
        return [], None
    columns = {c.name: [_arrow_value(r[c.name]) for r in rows] for c in table.columns}
    arrow = pa.table({name: pa.array(values) for name, values in columns.items()})
    archive_dir.mkdir(parents=True, exist_ok=True)
    path = archive_dir / f"{target.table}_before_{cutoff.date().isoformat()}_{stamp}.parquet"
    tmp = temporary_name_for(path)
    try:
        pq.write_table(arrow, tmp, compression="zstd")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(archive_dir)
    return [int(r["id"]) for r in rows], path


def verify_archive(path: Path, ids: list[int]) -> tuple[bool, str]:
    table = pq.read_table(path)
    archived_ids = table.column("id").to_pylist()
    if len(archived_ids) != len(ids):
        return False, f"archive holds {len(archived_ids)} rows, expected {len(ids)}"
    if id_checksum(archived_ids) != id_checksum(ids):
        return False, "archive id checksum differs from the database's"
    return True, id_checksum(ids)


def purge_table(engine, target: PurgeTarget, cutoff: datetime, archive_dir: Path, stamp: str, batch_size: int,
                lock_timeout_ms: int, statement_timeout_ms: int, dry_run: bool) -> PurgeOutcome:
    table, where = _old_rows_query(target, cutoff)
    outcome = PurgeOutcome(target.table)
    if dry_run:
        with engine.connect() as conn:
            outcome.selected = len(conn.execute(select(table.c.id).where(where)).all())
        outcome.remaining_old = outcome.selected
        return outcome
    outcome.dead_temporaries_removed = len(remove_dead_temporaries(archive_dir, f"{target.table}_before_*.parquet").removed)
    ids, path = archive_rows(engine, target, cutoff, archive_dir, stamp)
    outcome.selected = len(ids)
    if not ids:
        return outcome
    outcome.archive_path = str(path)
    outcome.archived = pq.read_metadata(path).num_rows
    ok, detail = verify_archive(path, ids)
    outcome.verified = ok
    if not ok:
        outcome.error = f"archive verification failed, nothing deleted: {detail}"
        outcome.remaining_old = len(ids)
        return outcome
    outcome.archive_checksum = detail
    postgres = engine.dialect.name == "postgresql"
    for batch in batches(ids, batch_size):
        try:
            with engine.begin() as conn:
                if postgres:
                    conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
                    conn.execute(text(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"))
                # only archived ids, and only rows still old: a row changed since stays
                deleted = conn.execute(table.delete().where(and_(table.c.id.in_(batch), where))).rowcount
            outcome.deleted += deleted
            outcome.deleted_ids.extend(batch)
            outcome.batches_done += 1
        except Exception as exc:  # noqa: BLE001 - stop this table; archived rows stay in the archive
            reason = explain_db_error(engine, exc, lock_timeout_ms, statement_timeout_ms)
            outcome.error = f"batch {outcome.batches_done + 1} failed, stopped: {reason}"
            break
    with engine.connect() as conn:
        outcome.remaining_old = len(conn.execute(select(table.c.id).where(where)).all())
    return outcome


def purge_all(engine, cutoff: datetime, archive_dir: Path, stamp: str, batch_size: int, lock_timeout_ms: int,
              statement_timeout_ms: int, dry_run: bool) -> list[PurgeOutcome]:
    return [purge_table(engine, t, cutoff, archive_dir, stamp, batch_size, lock_timeout_ms, statement_timeout_ms, dry_run)
            for t in PURGE_TARGETS]
