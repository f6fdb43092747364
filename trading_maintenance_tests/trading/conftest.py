"""Fixtures for the trading-integrity tests: a seeded trading database and the local Alpaca server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import insert

from trading_maintenance.core.trading import schema as ts
from trading_maintenance.demo.broker_server import DemoBrokerServer, broker_state_from_db
from trading_maintenance.resources.broker import AlpacaBrokerResource
from trading_maintenance.resources.database import database_engine, ensure_trading_schema

API_KEY = "PKTESTKEY1234567890"
SECRET_KEY = "sEcReT-abcdefghijklmnop-0987654321"


def _rows(conn, table, rows) -> None:
    for row in rows:
        conn.execute(insert(table).values(**row))


def seed_consistent(engine, now: datetime) -> None:
    """A small portfolio whose DB rows agree with each other (the broker state is built from them)."""
    ensure_trading_schema(engine)
    t = now - timedelta(days=2)
    with engine.begin() as conn:
        _rows(conn, ts.positions, [
            {"ticker": "AAPL", "side": "long", "quantity": Decimal(100), "entry_price": Decimal("150.25"), "entry_time": t,
             "status": "open", "market_value": Decimal("15500")},
            {"ticker": "TSLA", "side": "short", "quantity": Decimal(20), "entry_price": Decimal("240.10"), "entry_time": t,
             "status": "open", "market_value": Decimal("4700")},
            {"ticker": "BRK.B", "side": "long", "quantity": Decimal(10), "entry_price": Decimal("410.00"), "entry_time": t,
             "status": "open", "market_value": Decimal("4150")},
        ])
        _rows(conn, ts.orders, [
            {"id": 1, "client_order_id": "c-1", "broker_order_id": "b-1", "symbol": "AAPL", "side": "buy", "order_type": "market",
             "quantity": Decimal(100), "filled_quantity": Decimal(100), "filled_price": Decimal("150.25"), "status": "filled",
             "submitted_at": t, "filled_at": t, "created_at": t, "updated_at": t},
            {"id": 2, "client_order_id": "c-2", "broker_order_id": "b-2", "symbol": "TSLA", "side": "sell", "order_type": "market",
             "quantity": Decimal(20), "filled_quantity": Decimal(20), "filled_price": Decimal("240.10"), "status": "filled",
             "submitted_at": t, "filled_at": t, "created_at": t, "updated_at": t},
            {"id": 3, "client_order_id": "c-3", "broker_order_id": "b-3", "symbol": "MSFT", "side": "buy", "order_type": "limit",
             "quantity": Decimal(5), "price": Decimal("300"), "filled_quantity": 0, "status": "submitted",
             "submitted_at": now - timedelta(minutes=5), "created_at": now - timedelta(minutes=5), "updated_at": now},
        ])
        _rows(conn, ts.fills, [
            {"order_id": 1, "trade_id": "f-1", "symbol": "AAPL", "side": "buy", "quantity": Decimal(100), "price": Decimal("150.25"),
             "commission": Decimal("1"), "timestamp": t},
            {"order_id": 2, "trade_id": "f-2", "symbol": "TSLA", "side": "sell", "quantity": Decimal(20), "price": Decimal("240.10"),
             "commission": Decimal("1"), "timestamp": t + timedelta(minutes=1)},
        ])
        _rows(conn, ts.daily_performance, [
            {"date": (now - timedelta(days=1)).date(), "total_trades": 2, "cash_balance": Decimal("50000.00"),
             "portfolio_value": Decimal("74350"), "buying_power": Decimal("100000")},
        ])


def seed_redis_consistent(client) -> None:
    client.hset("positions:AAPL", mapping={"quantity": "100", "side": "long", "avg_entry_price": "150.25", "market_value": "15500"})
    client.hset("positions:TSLA", mapping={"quantity": "20", "side": "short", "avg_entry_price": "240.10", "market_value": "4700"})
    client.hset("positions:BRK.B", mapping={"quantity": "10", "side": "long", "avg_entry_price": "410", "market_value": "4150"})
    client.set("portfolio:cash_balance", "50000.00")


@pytest.fixture
def sqlite_engine(data_dir):
    engine = database_engine("", data_dir)
    ensure_trading_schema(engine)
    return engine


@pytest.fixture
def broker_server():
    server = DemoBrokerServer(api_key=API_KEY, secret_key=SECRET_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def broker_resource(broker_server):
    return AlpacaBrokerResource(base_url=broker_server.url, api_key=API_KEY, secret_key=SECRET_KEY,
                                timeout_seconds=1.0, max_retries=2, backoff_seconds=0.01)


@pytest.fixture
def seeded(data_dir, sqlite_engine, redis_client, broker_server):
    """Consistent DB, Redis and broker: reconciliation must report nothing."""
    now = datetime.now(timezone.utc)
    seed_consistent(sqlite_engine, now)
    seed_redis_consistent(redis_client)
    broker_server.set_state(broker_state_from_db(sqlite_engine, now))
    return sqlite_engine
