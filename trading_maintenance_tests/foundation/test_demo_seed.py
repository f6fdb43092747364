"""The demo platform: realistic, with the defects real files have, deterministic per seed."""

import hashlib
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert, text

from trading_maintenance.core.trading import schema as ts
from trading_maintenance.demo.seed import DEMO_MARK_KEY, DemoStoreRefused, mark_demo_redis, seed_platform
from trading_maintenance.resources.database import database_engine, ensure_trading_schema
from trading_maintenance_tests.conftest import write_config

CLI = [sys.executable, "-m", "trading_maintenance.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.parquet")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def demo_redis(redis_client):
    """The test's own Redis database, explicitly marked as a demo store."""
    mark_demo_redis(redis_client)
    return redis_client


def _seed(data, redis_client, **kwargs):
    """Seed with the embedded SQLite of `data` (a store the demo may take while empty)."""
    return seed_platform(data, redis_client, database_engine("", data), database_takeable=True, **kwargs)


@pytest.fixture
def seeded(tmp_path, demo_redis):
    data = tmp_path / "a"
    summary = _seed(data, demo_redis, symbols=3, days=30, seed=7, as_of=date(2026, 11, 20))
    return data, summary


def test_seed_writes_every_part_of_the_platform(seeded, redis_client):
    data, summary = seeded
    assert summary["trading_days"] == 22 and summary["market_data_files"] == 3 * 22 * 2  # 2026-10-21..11-19
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(summary["truncated_file"])
    legacy = pq.read_schema(summary["old_schema_file"])
    assert "asset_type" not in legacy.names and str(legacy.field("timestamp").type) == "timestamp[ns]"
    damaged = (summary["truncated_file"], summary["old_schema_file"])
    frames = [pl.read_parquet(p) for p in (data / "parquet/market_data").rglob("1min/*.parquet") if str(p) not in damaged]
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


def test_seed_is_deterministic_per_seed(seeded, tmp_path, demo_redis):
    data, _ = seeded
    other = tmp_path / "b"
    _seed(other, demo_redis, symbols=3, days=30, seed=7, as_of=date(2026, 11, 20))
    assert _digest(data / "parquet") == _digest(other / "parquet")
    third = tmp_path / "c"
    _seed(third, demo_redis, symbols=3, days=30, seed=8, as_of=date(2026, 11, 20))
    assert _digest(third / "parquet") != _digest(data / "parquet")


def _plant_real_platform(pg_url, redis_client):
    engine = database_engine(pg_url, "unused")
    ensure_trading_schema(engine)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(insert(ts.orders), [{"client_order_id": "live-1", "symbol": "AAPL", "side": "buy", "order_type": "market",
                                          "quantity": 5, "status": "submitted", "created_at": now, "updated_at": now}])
    redis_client.hset("positions:AAPL", mapping={"quantity": 5, "side": "long"})
    redis_client.hset("orders:pending:live-1", mapping={"symbol": "AAPL", "status": "submitted"})
    return engine


def _platform_state(engine, redis_client):
    with engine.connect() as conn:
        orders = conn.execute(text("SELECT client_order_id, status FROM trading.orders ORDER BY id")).all()
        marked = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_name = 'demo_store'")).scalar()
    keys = sorted(k.decode() for k in redis_client.scan_iter())
    return orders, marked, keys, redis_client.hgetall("positions:AAPL")


@pytest.mark.parametrize("takeable", [False, True])
def test_seed_refuses_stores_holding_platform_data_and_writes_nothing(tmp_path, pg_url, redis_client, takeable):
    engine = _plant_real_platform(pg_url, redis_client)
    before = _platform_state(engine, redis_client)
    data = tmp_path / "empty_root"
    with pytest.raises(DemoStoreRefused) as info:
        seed_platform(data, redis_client, engine, symbols=2, days=5, redis_takeable=takeable, database_takeable=takeable)
    message = str(info.value)
    assert "trading.orders" in message and "positions:AAPL" in message and "nothing written" in message
    assert _platform_state(engine, redis_client) == before
    assert not data.exists()


def test_seed_refuses_an_empty_store_that_is_neither_embedded_nor_named(tmp_path, pg_url, redis_client):
    engine = database_engine(pg_url, "unused")
    with pytest.raises(DemoStoreRefused) as info:
        seed_platform(tmp_path / "d", redis_client, engine, symbols=2, days=5)
    assert "TRADING_DEMO_ALLOW_URL" in str(info.value)
    assert list(redis_client.scan_iter()) == []
    with engine.connect() as conn:
        assert not engine.dialect.has_schema(conn, "trading")


def test_seed_refuses_a_data_root_with_files_it_did_not_write(tmp_path, demo_redis):
    data = tmp_path / "root"
    log = data / "logs" / "trading_system.log"
    log.parent.mkdir(parents=True)
    log.write_text("real line\n")
    with pytest.raises(DemoStoreRefused, match="logs/trading_system.log"):
        _seed(data, demo_redis, symbols=2, days=5)
    assert log.read_text() == "real line\n" and not (data / "parquet").exists()


@pytest.mark.parametrize("days,as_of", [(1, date(2026, 11, 23)), (2, date(2026, 11, 23)), (2, date(2026, 11, 20)), (3, date(2026, 11, 25))])
def test_a_small_demo_works(tmp_path, demo_redis, days, as_of):
    data = tmp_path / "small"
    summary = _seed(data, demo_redis, symbols=2, days=days, as_of=as_of)
    with database_engine("", data).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.fills WHERE symbol IS NULL")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar() == summary["fills"]
        assert conn.execute(text("SELECT count(*) FROM trading.orders")).scalar() == summary["orders"] >= 2


def _cli(args, env):
    return subprocess.run(CLI + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


def _cli_env(tmp_path, data_dir, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "TRADING_DEMO_ALLOW_URL")}
    return {**env, "DAGSTER_HOME": str(tmp_path / "home"), "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir)),
            "TRADING_DATA_DIR": str(data_dir), **extra}


def test_cli_seed_if_empty_never_touches_a_real_platform(tmp_path, data_dir, pg_url, redis_url, redis_client):
    engine = _plant_real_platform(pg_url, redis_client)
    before = _platform_state(engine, redis_client)
    env = _cli_env(tmp_path, data_dir, DATABASE_URL=pg_url, REDIS_URL=redis_url)
    skipped = _cli(["demo", "seed", "--if-empty", "--symbols", "2", "--days", "5"], env)
    assert skipped.returncode == 0 and "refused, nothing written" in skipped.stdout.replace("\n", " ")
    refused = _cli(["demo", "seed", "--symbols", "2", "--days", "5"], env)
    assert refused.returncode == 1 and "Traceback" not in refused.stdout + refused.stderr
    assert _platform_state(engine, redis_client) == before
    assert not (data_dir / "parquet").exists()


def test_cli_seed_into_named_postgres_leaves_sequences_ready_for_the_platform(tmp_path, data_dir, pg_url, redis_url, redis_client):
    env = _cli_env(tmp_path, data_dir, DATABASE_URL=pg_url, REDIS_URL=redis_url, TRADING_DEMO_ALLOW_URL=f"{pg_url} {redis_url}")
    seeded = _cli(["demo", "seed", "--symbols", "2", "--days", "6"], env)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert redis_client.get(DEMO_MARK_KEY) is not None
    engine = database_engine(pg_url, "unused")
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        top_order = conn.execute(text("SELECT max(id) FROM trading.orders")).scalar()
        order_id = conn.execute(insert(ts.orders).returning(ts.orders.c.id), [{"client_order_id": "after-demo", "symbol": "AAPL", "side": "buy",
                                "order_type": "market", "quantity": 1, "status": "filled", "created_at": now, "updated_at": now}]).scalar()
        fill_id = conn.execute(insert(ts.fills).returning(ts.fills.c.id), [{"order_id": order_id, "symbol": "AAPL", "side": "buy", "quantity": 1,
                               "price": 10, "commission": 0, "timestamp": now}]).scalar()
    assert order_id > top_order and fill_id >= 1
    again = _cli(["demo", "seed", "--symbols", "2", "--days", "6"], env)  # a marked store is a demo store: seeded again
    assert again.returncode == 0, again.stdout + again.stderr
