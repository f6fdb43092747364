"""Database maintenance against the real PostgreSQL (and the embedded SQLite file)."""

from __future__ import annotations

import _thread
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.pool import NullPool

from trading_maintenance.core.database.maintenance import TableStats, estimate_index_bloat, id_checksum, plan_postgres
from trading_maintenance.core.database.sql import run_interruptible
from trading_maintenance.core.trading import schema as ts
from trading_maintenance.defs.database.ops import database_maintenance_job
from trading_maintenance.resources.database import TradingDatabaseResource, database_engine, ensure_trading_schema

from ..conftest import write_config

NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=400)


def _run(make_resources, url, config_path=None, **op_config):
    return database_maintenance_job.execute_in_process(
        resources=make_resources(database_url=url, config=config_path),
        run_config={"ops": {"maintain_trading_database": {"config": {"allow_during_market_hours": True, **op_config}}}},
        raise_on_error=False,
    )


def _fills(n, when, start_id=1, symbol="AAPL"):
    return [{"id": start_id + i, "order_id": i, "trade_id": f"t{start_id + i}", "symbol": symbol, "side": "buy",
             "quantity": Decimal(1 + i % 7), "price": Decimal("100.123456") + i, "commission": Decimal("0.35"),
             "timestamp": when + timedelta(seconds=i)} for i in range(n)]


def _stat(url, table="fills"):
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            return conn.execute(text("SELECT n_dead_tup, pg_relation_size(relid) FROM pg_stat_user_tables "
                                     "WHERE schemaname='trading' AND relname=:t"), {"t": table}).one()
    finally:
        eng.dispose()


def test_dead_tuples_measured_vacuumed_space_reused_invalid_index_dropped(pg_url, make_resources, redis_client, tmp_path, data_dir):
    engine = database_engine(pg_url, "")
    ensure_trading_schema(engine)
    writer = create_engine(pg_url)
    with writer.begin() as conn:
        conn.execute(insert(ts.fills), _fills(20000, NOW - timedelta(days=1)))
        conn.execute(text("ANALYZE trading.fills"))
    with writer.begin() as conn:
        conn.execute(text("DELETE FROM trading.fills WHERE id % 4 <> 0"))  # 15000 dead tuples
    with writer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # an invalid index, as a failed build leaves
        try:
            conn.execute(text("CREATE UNIQUE INDEX CONCURRENTLY ix_fills_symbol_unique ON trading.fills (symbol)"))
        except Exception:
            pass
    writer.dispose()  # the backend's statistics are flushed when it exits
    deadline = time.time() + 20
    while _stat(pg_url)[0] < 15000 and time.time() < deadline:
        time.sleep(0.2)
    dead_before, bytes_before = _stat(pg_url)
    assert dead_before >= 15000

    config = write_config(tmp_path, data_dir, trading={"index_bloat_min_bytes": 0})
    result = _run(make_resources, pg_url, config, purge=False)
    assert result.success
    published = json.loads(redis_client.get("maintenance:result:database_maintenance"))
    before = {t["table"]: t for t in published["before"]}
    after = {t["table"]: t for t in published["after"]}
    assert before["trading.fills"]["dead"] >= 15000 and before["trading.fills"]["live"] == 5000
    done = {(a["kind"], a["target"]): a["status"] for a in published["actions"]}
    assert done[("vacuum_analyze", "trading.fills")] == "ok"
    assert done[("analyze", "trading.orders")] == "ok"
    assert done[("drop_invalid_index", "trading.ix_fills_symbol_unique")] == "ok"
    assert any(kind == "reindex" and status == "ok" for (kind, _), status in done.items())  # 75 % of the index entries were deleted
    assert after["trading.fills"]["dead"] == 0 and after["trading.fills"]["last_vacuum"]
    mats = result.output_for_node("maintain_trading_database")
    assert mats["xid_age"] > 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_indexes WHERE indexname='ix_fills_symbol_unique'")).scalar_one() == 0
    # the space VACUUM freed is reused: inserting as many rows as were deleted does not grow the table
    with engine.begin() as conn:
        conn.execute(insert(ts.fills), _fills(15000, NOW - timedelta(days=1), start_id=100001))
    assert _stat(pg_url)[1] <= bytes_before


def _seed_purge(engine):
    ensure_trading_schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(ts.fills), _fills(1200, OLD) + _fills(300, NOW - timedelta(days=3), start_id=5001))
        final = [{"id": i, "client_order_id": f"o{i}", "symbol": "AAPL", "side": "buy", "order_type": "market", "quantity": 1,
                  "status": "filled", "created_at": OLD, "updated_at": OLD} for i in range(1, 501)]
        pending = [{"id": i, "client_order_id": f"o{i}", "symbol": "AAPL", "side": "buy", "order_type": "market", "quantity": 1,
                    "status": "pending", "created_at": OLD, "updated_at": OLD} for i in range(501, 551)]
        recent = [{"id": i, "client_order_id": f"o{i}", "symbol": "AAPL", "side": "buy", "order_type": "market", "quantity": 1,
                   "status": "filled", "created_at": NOW, "updated_at": NOW} for i in range(551, 601)]
        conn.execute(insert(ts.orders), final + pending + recent)
        closed = [{"id": i, "ticker": "AAPL", "side": "long", "quantity": 1, "entry_price": 1, "entry_time": OLD, "exit_time": OLD,
                   "status": "closed", "pnl": Decimal("1.5")} for i in range(1, 101)]
        still_open = [{"id": i, "ticker": "AAPL", "side": "long", "quantity": 1, "entry_price": 1, "entry_time": OLD, "exit_time": None,
                       "status": "open", "pnl": None} for i in range(101, 121)]
        conn.execute(insert(ts.positions), closed + still_open)


def _count(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_purge_archive_round_trip_exact_counts(pg_url, make_resources, redis_client, tmp_path, data_dir):
    engine = database_engine(pg_url, "")
    _seed_purge(engine)
    with engine.connect() as conn:
        original = {r["id"]: r for r in conn.execute(select(ts.fills).where(ts.fills.c.timestamp < NOW - timedelta(days=365))).mappings()}
    dry = _run(make_resources, pg_url, dry_run=True)
    assert dry.success and _count(engine, ts.fills) == 1500
    assert {p["table"]: p["selected"] for p in json.loads(redis_client.get("maintenance:result:database_maintenance"))["purge"]} == {
        "fills": 1200, "orders": 500, "positions": 100}

    config = write_config(tmp_path, data_dir, trading={"purge_batch_size": 250})
    assert _run(make_resources, pg_url, config).success
    published = json.loads(redis_client.get("maintenance:result:database_maintenance"))
    purge = {p["table"]: p for p in published["purge"]}
    assert {t: (p["archived"], p["deleted"], p["remaining_old"], p["verified"]) for t, p in purge.items()} == {
        "fills": (1200, 1200, 0, True), "orders": (500, 500, 0, True), "positions": (100, 100, 0, True)}
    assert purge["fills"]["batches_done"] == 5
    assert (_count(engine, ts.fills), _count(engine, ts.orders), _count(engine, ts.positions)) == (300, 100, 20)
    archive = pq.read_table(purge["fills"]["archive_path"]).to_pylist()
    assert id_checksum(r["id"] for r in archive) == id_checksum(original) == purge["fills"]["archive_checksum"]
    for row in archive:  # exact values back, money as exact decimals
        source = original[row["id"]]
        assert Decimal(row["price"]) == source["price"] and row["timestamp"] == source["timestamp"] and row["trade_id"] == source["trade_id"]


def test_interrupted_purge_loses_nothing(pg_url, make_resources, redis_client, tmp_path, data_dir):
    engine = database_engine(pg_url, "")
    _seed_purge(engine)
    old_ids = set(range(1, 1201))
    config = write_config(tmp_path, data_dir, trading={"purge_batch_size": 400, "lock_timeout_ms": 200})
    locker = create_engine(pg_url)
    conn = locker.connect()
    trans = conn.begin()
    conn.execute(text("SELECT id FROM trading.fills WHERE id = 900 FOR UPDATE"))  # a row of the third batch is locked
    try:
        result = _run(make_resources, pg_url, config)
    finally:
        trans.rollback()
        conn.close()
        locker.dispose()
    assert not result.success
    first = {p["table"]: p for p in json.loads(redis_client.get("maintenance:result:database_maintenance"))["purge"]}["fills"]
    assert first["batches_done"] == 2 and first["deleted"] == 800 and "batch 3 failed" in first["error"]
    assert first["remaining_old"] == 400
    archived_first = {r["id"] for r in pq.read_table(first["archive_path"]).to_pylist()}
    assert archived_first == old_ids  # every old row is in the verified archive, deleted or not
    with engine.connect() as c:
        still = {r[0] for r in c.execute(select(ts.fills.c.id).where(ts.fills.c.id <= 1200))}
    assert still == set(range(801, 1201))

    time.sleep(1.1)  # a new archive name (stamped to the second)
    assert _run(make_resources, pg_url, config).success
    second = {p["table"]: p for p in json.loads(redis_client.get("maintenance:result:database_maintenance"))["purge"]}["fills"]
    assert (second["archived"], second["deleted"], second["remaining_old"]) == (400, 400, 0)
    assert {r["id"] for r in pq.read_table(second["archive_path"]).to_pylist()} == set(range(801, 1201))
    assert _count(engine, ts.fills) == 300


def test_sqlite_integrity_analyze_reindex_vacuum_and_purge(make_resources, redis_client, data_dir):
    engine = database_engine("", data_dir)
    _seed_purge(engine)
    assert _run(make_resources, "").success
    published = json.loads(redis_client.get("maintenance:result:database_maintenance"))
    assert published["dialect"] == "sqlite"
    assert [a["kind"] for a in published["actions"]] == ["integrity_check", "analyze", "reindex", "reindex", "reindex", "vacuum"]
    assert all(a["status"] == "ok" for a in published["actions"])
    assert published["after"]["free_pages"] == 0 and published["before"]["bytes"] > 0
    assert (_count(engine, ts.fills), _count(engine, ts.orders), _count(engine, ts.positions)) == (300, 100, 20)
    assert {p["table"]: p["archived"] for p in published["purge"]} == {"fills": 1200, "orders": 500, "positions": 100}


def test_plan_rules_true_and_false_positive():
    busy = TableStats("trading.fills", live_tuples=1000, dead_tuples=5000, total_bytes=1, table_bytes=1, index_bytes=0)
    quiet = TableStats("trading.orders", live_tuples=100000, dead_tuples=5000, total_bytes=1, table_bytes=1, index_bytes=0)
    kinds = {a.target: a.kind for a in plan_postgres([busy, quiet], [], 1000, 0.1, 30, 0)}
    assert kinds == {"trading.fills": "vacuum_analyze", "trading.orders": "analyze"}
    assert estimate_index_bloat(10 * 1024 * 1024, 1000, 8) > 90
    assert estimate_index_bloat(40 * 8192, 10000, 8) < 30  # a healthy index stays under the threshold
    assert estimate_index_bloat(10 * 1024 * 1024, -1, 8) == 0.0


def _hold_access_exclusive(pg_url, table="trading.orders"):
    """Another session holding ACCESS EXCLUSIVE on a table, as a long migration does."""
    locker = create_engine(pg_url, poolclass=NullPool)
    conn = locker.connect()
    conn.begin()
    conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
    return locker, conn


def test_held_lock_fails_maintenance_within_lock_timeout_naming_the_table(pg_url, make_resources, redis_client, data_dir):
    ensure_trading_schema(database_engine(pg_url, ""))
    locker, conn = _hold_access_exclusive(pg_url)
    try:
        # the resource's own timeouts (no per-step SET): the very first measurement must give up
        db = TradingDatabaseResource(url=pg_url, data_dir=str(data_dir), lock_timeout_ms=300, statement_timeout_ms=60000)
        result = database_maintenance_job.execute_in_process(
            resources=make_resources(database_url=pg_url, trading_db=db),
            run_config={"ops": {"maintain_trading_database": {"config": {"allow_during_market_hours": True}}}},
            raise_on_error=False,
        )
    finally:
        conn.close()
        locker.dispose()
    assert not result.success
    published = json.loads(redis_client.get("maintenance:result:database_maintenance"))
    assert published["status"] == "failed"
    assert "lock_timeout 300 ms" in published["error"]
    assert "trading.orders AccessExclusiveLock held by pid" in published["error"]
    failure = result.failure_data_for_node("maintain_trading_database").error
    assert "trading.orders AccessExclusiveLock" in failure.message and "Traceback" not in failure.message


def test_every_project_session_carries_lock_and_statement_timeouts(pg_url):
    engine = database_engine(pg_url, "", lock_timeout_ms=1234, statement_timeout_ms=56789)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "1234ms"
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "56789ms"


def test_interruption_cancels_the_backend_waiting_for_a_lock(pg_url):
    engine = database_engine(pg_url, "", lock_timeout_ms=600000, statement_timeout_ms=600000)
    ensure_trading_schema(engine)
    locker, conn = _hold_access_exclusive(pg_url)
    waiting = threading.Event()
    waiter: list[int] = []
    blocked = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = :pid")

    def wait_for_lock():
        with engine.connect() as session:
            waiter.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            waiting.set()
            session.execute(text("SELECT count(*) FROM trading.orders")).scalar_one()

    def interrupt_when_blocked():
        waiting.wait(10)
        with locker.connect() as probe:  # interrupt only once the query really waits on the lock
            for _ in range(100):
                if probe.execute(blocked, {"pid": waiter[0]}).scalar_one():
                    break
                time.sleep(0.05)
        _thread.interrupt_main()

    try:
        threading.Thread(target=interrupt_when_blocked, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_interruptible(engine, wait_for_lock)
        with locker.connect() as probe:  # the lock is still held, yet nothing waits for it any more
            assert probe.execute(blocked, {"pid": waiter[0]}).scalar_one() == 0
    finally:
        conn.close()
        locker.dispose()


def test_purge_archive_left_half_written_by_a_crash_is_removed_by_the_next_purge(data_dir, tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    from trading_maintenance.core.common.atomic import host_label, parse_temporary_name
    from trading_maintenance.core.database.maintenance import PURGE_TARGETS
    from trading_maintenance.core.database.sql import purge_table

    engine = database_engine("", data_dir)
    _seed_purge(engine)
    archive_dir = tmp_path / "archive"
    fills = next(t for t in PURGE_TARGETS if t.table == "fills")
    crash = textwrap.dedent(
        f"""
        import os
        from datetime import datetime, timedelta, timezone
        from pathlib import Path
        from trading_maintenance.core.database import sql
        from trading_maintenance.core.database.maintenance import PURGE_TARGETS
        from trading_maintenance.resources.database import database_engine
        os.replace = lambda *a: os._exit(3)
        target = next(t for t in PURGE_TARGETS if t.table == "fills")
        cutoff = datetime.now(timezone.utc) - timedelta(days=365)
        sql.archive_rows(database_engine("", {str(data_dir)!r}), target, cutoff, Path({str(archive_dir)!r}), "crashed")
        """
    )
    child = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True)
    assert child.returncode == 3, child.stderr
    (leftover,) = archive_dir.iterdir()
    writer = parse_temporary_name(leftover.name)
    assert writer and writer.host == host_label() and writer.target.startswith("fills_before_") and writer.target.endswith("_crashed.parquet")
    live = archive_dir / f".fills_before_x.parquet.{os.getpid()}@{host_label()}.0123abcd.tmp"
    live.write_bytes(b"a purge still writing")

    outcome = purge_table(engine, fills, NOW - timedelta(days=365), archive_dir, "next", 500, 1000, 10000, dry_run=False)
    assert outcome.error == "" and outcome.verified and outcome.deleted == 1200
    assert outcome.dead_temporaries_removed == 1 and not leftover.exists() and live.exists()
    assert sorted(p.name for p in archive_dir.iterdir()) == sorted([live.name, os.path.basename(outcome.archive_path)])
