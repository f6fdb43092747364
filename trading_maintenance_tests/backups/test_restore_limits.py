"""Bounded waits and resources of a restore: pg_restore and the drill's sessions give up on a lock held
elsewhere, the free-space check counts the safety copies, and staging folders of earlier versions go."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest
from sqlalchemy import create_engine, text

from trading_maintenance.core.backups import postgres_dump
from trading_maintenance.core.backups.database import DatabaseBackupError
from trading_maintenance.core.backups.drill import run_drill
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.restore_parts import RestoreRefused
from trading_maintenance.core.backups.run import create_backup
from trading_maintenance.core.backups.temporaries import LEGACY_STALE_SECONDS, owned_temp_dir, remove_legacy_stage_dirs
from trading_maintenance.resources.database import TradingDatabaseResource
from trading_maintenance_tests.backups.conftest import fill_database


def test_pg_restore_gives_up_on_a_locked_table_and_changes_nothing(tmp_path, pg_engine, pg_url):
    if postgres_dump.pg_tool("pg_dump") is None:
        pytest.skip("pg_dump/pg_restore are not installed")
    fill_database(pg_engine)
    dump = postgres_dump.backup_postgres(pg_engine, pg_url, tmp_path, "pg_dump")["files"][0][1]
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM trading.daily_performance"))
    holder = pg_engine.connect()
    transaction = holder.begin()
    holder.execute(text("LOCK TABLE trading.orders IN ACCESS SHARE MODE"))  # a reader the restore's DROP must wait for
    try:
        with pytest.raises(DatabaseBackupError, match="waited more than 300 ms for a lock"):
            postgres_dump.restore_pg_dump(pg_url, dump, schema_exists=True, lock_timeout_ms=300)
    finally:
        transaction.rollback()
        holder.close()
    with pg_engine.connect() as conn:  # one transaction: nothing of the restore stayed
        assert conn.execute(text("SELECT count(*) FROM trading.daily_performance")).scalar() == 0
    postgres_dump.restore_pg_dump(pg_url, dump, schema_exists=True, lock_timeout_ms=300)
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.daily_performance")).scalar() == 5


def test_drill_sessions_give_up_on_a_lock_held_elsewhere(tmp_path, data_dir, pg_engine, pg_url, pg_server_url):
    fill_database(pg_engine)
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=None, parts=["database"], config_path=None,
                            effective_settings={}, secret_keys=set(), engine=pg_engine, db_url=pg_url, data_dir=data_dir)
    admin = create_engine(pg_server_url)
    holder = admin.connect()
    transaction = holder.begin()
    # CREATE DATABASE copies template1 under a share lock; a pending COMMENT holds a conflicting one.
    holder.execute(text("COMMENT ON DATABASE template1 IS 'held by a test'"))
    try:
        report = run_drill(outcome.archive.path, None, work_root=tmp_path / "work", pg_admin_url=pg_url, lock_timeout_ms=300)
    finally:
        transaction.rollback()
        holder.close()
        admin.dispose()
    database = next(c for c in report.checks if c["part"] == "database")
    assert not report.passed and not database["passed"] and "lock timeout" in database["detail"]
    assert run_drill(outcome.archive.path, None, work_root=tmp_path / "work", pg_admin_url=pg_url).passed


def test_free_space_check_counts_the_database_safety_copy(tmp_path, data_dir):
    engine = TradingDatabaseResource(url="", data_dir=str(data_dir)).get_engine()
    fill_database(engine)
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=None, parts=["database"], config_path=None,
                            effective_settings={}, secret_keys=set(), engine=engine, data_dir=data_dir)
    engine.dispose()
    target = data_dir / "db" / "trading.db"
    with sqlite3.connect(target) as conn:  # the live database grew far beyond the backup since
        conn.execute("CREATE TABLE padding (b BLOB)")
        conn.executemany("INSERT INTO padding VALUES (zeroblob(1048576))", [()] * 96)
    before = target.read_bytes()
    stage_root = data_dir / "temp"
    stage_root.mkdir(parents=True, exist_ok=True)
    # Room for staging the small dump with 48 MB to spare, not for a 96 MB safety copy of the target.
    keep_free = os.statvfs(stage_root).f_bavail * os.statvfs(stage_root).f_frsize - (48 << 20)
    engine = TradingDatabaseResource(url="", data_dir=str(data_dir)).get_engine()
    with pytest.raises(RestoreRefused, match="database safety copy"):
        restore_backup(outcome.archive.path, None, {"database"}, stage_root=stage_root, engine=engine, data_dir=data_dir,
                       force=True, min_free_bytes=keep_free)
    engine.dispose()
    assert target.read_bytes() == before


def test_staging_folders_of_earlier_versions_are_removed_once_dead(tmp_path):
    stale = tmp_path / "restore-ab_c12x9"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "copy.parquet").write_bytes(b"x")
    fresh = tmp_path / "restore-zz99yy88"  # an older version's restore may still be running
    fresh.mkdir()
    kept_safety = tmp_path / "restore-safety-k3j4h5g6"  # a safety copy is all that is left of a failed rollback
    kept_safety.mkdir()
    old_drill = tmp_path / "drill-q1w2e3r4"
    old_drill.mkdir()
    past = time.time() - LEGACY_STALE_SECONDS - 60
    for path in (stale, stale / "data", stale / "data" / "copy.parquet", kept_safety, old_drill):
        os.utime(path, (past, past))
    with owned_temp_dir(tmp_path, "restore-") as live:  # a live process's folder, however old
        os.utime(live, (past, past))
        removed = remove_legacy_stage_dirs(tmp_path)
        assert live.exists()
    assert sorted(removed) == sorted([str(stale), str(old_drill)])
    assert fresh.exists() and kept_safety.exists()
