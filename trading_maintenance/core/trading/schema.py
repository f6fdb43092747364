"""The trading database tables of the platform contract (schema `trading`), as SQLAlchemy Core.

PostgreSQL holds them in schema `trading`; the embedded SQLite file is attached as `trading`, so
`trading.orders` means the same table in raw SQL on both.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
)

SCHEMA = "trading"
metadata = MetaData(schema=SCHEMA)
MONEY = Numeric(20, 6)
QTY = Numeric(20, 6)

orders = Table(
    "orders",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("client_order_id", String(64), unique=True),
    Column("broker_order_id", String(64), index=True),
    Column("symbol", String(32), nullable=False, index=True),
    Column("side", String(8), nullable=False),
    Column("order_type", String(16), nullable=False, default="market"),
    Column("quantity", QTY, nullable=False),
    Column("price", MONEY),
    Column("filled_quantity", QTY, default=0),
    Column("filled_price", MONEY),
    Column("status", String(20), nullable=False, index=True),
    Column("submitted_at", DateTime(timezone=True)),
    Column("filled_at", DateTime(timezone=True)),
    Column("commission", MONEY, default=0),
    Column("strategy_name", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

fills = Table(
    "fills",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_id", BigInteger, index=True),
    Column("trade_id", String(64), index=True),
    Column("symbol", String(32), nullable=False, index=True),
    Column("side", String(8), nullable=False),
    Column("quantity", QTY, nullable=False),
    Column("price", MONEY, nullable=False),
    Column("commission", MONEY, default=0),
    Column("timestamp", DateTime(timezone=True), nullable=False, index=True),
    Column("liquidity", String(16)),
)

positions = Table(
    "positions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ticker", String(32), nullable=False, index=True),
    Column("side", String(8), nullable=False),
    Column("quantity", QTY, nullable=False),
    Column("entry_price", MONEY, nullable=False),
    Column("entry_time", DateTime(timezone=True), nullable=False),
    Column("exit_time", DateTime(timezone=True)),
    Column("exit_price", MONEY),
    Column("status", String(12), nullable=False, index=True),
    Column("strategy_type", String(64)),
    Column("pnl", MONEY),
    Column("commission", MONEY, default=0),
    Column("cost_basis", MONEY),
    Column("market_value", MONEY),
    Column("account_id", String(64)),
)

daily_performance = Table(
    "daily_performance",
    metadata,
    Column("date", Date, primary_key=True),
    Column("total_trades", Integer, nullable=False, default=0),
    Column("gross_pnl", MONEY),
    Column("net_pnl", MONEY),
    Column("commission_total", MONEY),
    Column("portfolio_value", MONEY),
    Column("cash_balance", MONEY),
    Column("buying_power", MONEY),
    Column("max_drawdown", Numeric(12, 6)),
    Column("win_rate", Numeric(8, 6)),
)

Index("ix_orders_status_submitted", orders.c.status, orders.c.submitted_at)

ORDER_FINAL_STATUSES = ("filled", "cancelled", "rejected", "expired")
ORDER_OPEN_STATUSES = ("pending", "submitted", "partially_filled")
