"""Backup test fixtures: a second private Redis database, sample data, a local S3 (moto server)."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import create_engine

from trading_maintenance_tests.conftest import claim_redis_database


@pytest.fixture(autouse=True)
def private_key_cache(tmp_path, monkeypatch):
    """Each test's repository key cache in its own folder, never the user's."""
    folder = tmp_path / "key-cache"
    monkeypatch.setenv("BACKUP_KEY_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def spare_redis_url(redis_server_url, redis_url):
    """Another flushed logical database, claimed with the same lock keys as the root conftest."""
    with claim_redis_database(redis_server_url, order=range(15, 0, -1)) as url:
        yield url


def fill_redis(client) -> None:
    """Every core type, binary keys and values, TTLs, plus a stream (DUMP path)."""
    client.hset("positions:AAPL", mapping={"quantity": "100", "side": "long", "avg_entry_price": "187.25"})
    client.hset(b"bin:\xff\x00hash", mapping={b"\x00f": b"\xff\xfe\x00v"})
    client.set("portfolio:cash_balance", "100000.50")
    client.set(b"bin:\x00\xffstr", bytes(range(256)))
    client.set("price_cache:AAPL", "187.30", px=600_000)
    client.rpush("queue:orders", "a", "b", b"\x00c", "a")
    client.sadd("active_tickers", "AAPL", "MSFT", "TSLA")
    client.zadd("leaderboard", {"alpha": 1.5, "beta": -2.25, b"\xffgamma": 1e300})
    client.expire("leaderboard", 3600)
    client.hset("session:abc", mapping={"user": "x"})
    client.expire("session:abc", 120)
    client.xadd("events:stream", {"kind": "fill", "qty": "10"})


def fill_database(engine) -> dict:
    from trading_maintenance.core.trading import schema as ts
    from trading_maintenance.resources.database import ensure_trading_schema

    ensure_trading_schema(engine)
    now = datetime(2026, 11, 20, 15, 30, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(ts.orders.insert(), [
            {"client_order_id": f"c{i}", "broker_order_id": f"b{i}", "symbol": "AAPL", "side": "buy", "order_type": "market",
             "quantity": Decimal("10.5"), "price": Decimal("187.123456"), "status": "filled",
             "submitted_at": now + timedelta(minutes=i), "created_at": now, "updated_at": now}
            for i in range(25)
        ])
        conn.execute(ts.fills.insert(), [
            {"order_id": i + 1, "trade_id": f"t{i}", "symbol": "AAPL", "side": "buy", "quantity": Decimal("10.5"),
             "price": Decimal("187.1"), "timestamp": now} for i in range(25)
        ])
        conn.execute(ts.daily_performance.insert(), [
            {"date": (now - timedelta(days=d)).date(), "total_trades": d, "net_pnl": Decimal("-12.345678")} for d in range(5)
        ])
    return {"orders": 25, "fills": 25, "daily_performance": 5, "positions": 0}


def fill_trading_data(data_dir, today=None):
    """A few market-data files (recent and old daily, one monthly archive), an export and a report."""
    today = today or datetime.now(timezone.utc).date()
    files = {}
    recent = data_dir / "parquet/market_data/AAPL/1min" / f"{today.isoformat()}.parquet"
    old = data_dir / "parquet/market_data/AAPL/1min" / f"{(today - timedelta(days=400)).isoformat()}.parquet"
    monthly = data_dir / "parquet/market_data_monthly/AAPL/1min/2025-01.parquet"
    export = data_dir / "exports/tradenote/2026-11-20.csv"
    report = data_dir / "reports/maintenance/weekly.md"
    for i, path in enumerate([recent, old, monthly, export, report]):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i]) * (1000 + i) + b"\x00\xff" * 50)
        files[path] = path.read_bytes()
    return files


@pytest.fixture
def pg_engine(pg_url):
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto in server mode: a real HTTP S3 endpoint on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    import boto3

    name = f"tm-backups-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name
