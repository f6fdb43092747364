"""The demo platform: realistic, with the defects real files have, deterministic per seed."""

import hashlib
from datetime import date

import polars as pl
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from trading_maintenance.demo.seed import seed_platform
from trading_maintenance.resources.database import database_engine


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.parquet")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def seeded(tmp_path, redis_client):
    data = tmp_path / "a"
    summary = seed_platform(data, redis_client, database_engine("", data), symbols=3, days=30, seed=7, as_of=date(2026, 11, 20))
    return data, summary


def test_seed_writes_every_part_of_the_platform(seeded, redis_client):
    data, summary = seeded
    assert summary["trading_days"] == 22 and summary["market_data_files"] == 3 * 22 * 2  # 2026-10-21..11-19
    with pytest.raises(Exception):
        pq.read_table(summary["truncated_file"])
    legacy = pq.read_schema(summary["old_schema_file"])
    assert "asset_type" not in legacy.names and str(legacy.field("timestamp").type) == "timestamp[ns]"
    frames = [pl.read_parquet(p) for p in (data / "parquet/market_data").rglob("1min/*.parquet") if str(p) not in (summary["truncated_file"], summary["old_schema_file"])]
    assert any(f.select(["symbol", "timeframe", "timestamp"]).is_duplicated().any() for f in frames)
    assert any(not f["timestamp"].is_sorted() for f in frames)
    assert (data / "logs/trading_system.log").stat().st_size > 0 and list((data / "logs").glob("*.log.*"))
    assert len(list((data / "temp").iterdir())) >= 7
    engine = database_engine("", data)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.orders")).scalar() == summary["orders"]
        assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar() == summary["fills"]
        assert conn.execute(text("SELECT count(*) FROM trading.orders WHERE status IN ('pending','submitted')")).scalar() == 2
    assert redis_client.type("positions:CORRUPT") == b"string"
    assert redis_client.ttl("cache:quote:AAPL") == -1 and redis_client.ttl("price_cache:AAPL") > 0
    assert redis_client.sismember("active_tickers", "AAPL") and redis_client.exists("ticker_last_seen:DELISTED1")
    assert int(redis_client.get("rate_limit:alpaca:limit")) == 200
    assert redis_client.get("trading:emergency_stop") == b"false"


def test_seed_is_deterministic_per_seed(seeded, tmp_path, redis_client):
    data, _ = seeded
    other = tmp_path / "b"
    seed_platform(other, redis_client, database_engine("", other), symbols=3, days=30, seed=7, as_of=date(2026, 11, 20))
    assert _digest(data / "parquet") == _digest(other / "parquet")
    third = tmp_path / "c"
    seed_platform(third, redis_client, database_engine("", third), symbols=3, days=30, seed=8, as_of=date(2026, 11, 20))
    assert _digest(third / "parquet") != _digest(data / "parquet")
