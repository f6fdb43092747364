"""What the trading platform owns and the maintenance tasks read: external assets (written by the
platform's services, never by Dagster), the upstream ends of every maintenance product's lineage."""

import dagster as dg

from trading_maintenance.defs.task import OWNERS

PLATFORM_GROUP = "platform"

TRADING_ORDERS = dg.AssetKey(["trading_database", "orders"])
TRADING_FILLS = dg.AssetKey(["trading_database", "fills"])
TRADING_POSITIONS = dg.AssetKey(["trading_database", "positions"])
REDIS_STATE = dg.AssetKey("redis_state")
PLATFORM_LOGS = dg.AssetKey("platform_logs")
BROKER_ACCOUNT = dg.AssetKey("broker_account")
PLATFORM_CONFIGURATION = dg.AssetKey("platform_configuration")

TRADING_DATABASE = [TRADING_ORDERS, TRADING_FILLS, TRADING_POSITIONS]


def _external(key: dg.AssetKey, description: str, kinds: set[str]) -> dg.AssetSpec:
    return dg.AssetSpec(key, description=description, group_name=PLATFORM_GROUP, kinds=kinds, owners=OWNERS)


trading_orders = _external(
    TRADING_ORDERS,
    "Every order the trading engine placed (table `orders` of the trading database). Reconciled weekly "
    "against the broker; purged after `trading.purge_after_days` once archived to parquet.",
    {"postgres", "table"},
)
trading_fills = _external(
    TRADING_FILLS,
    "Every execution the broker reported (table `fills`): the source of the TradeNote journal exports "
    "and of realised P&L. A fill missing here means a journal and a P&L that are wrong.",
    {"postgres", "table"},
)
trading_positions = _external(
    TRADING_POSITIONS,
    "Positions the trading engine believes it holds (table `positions`); reconciliation compares them "
    "with the broker's, which are the truth.",
    {"postgres", "table"},
)
redis_state = _external(
    REDIS_STATE,
    "Live state the services share through Redis: cached positions and cash, rate-limit counters, caches "
    "and maintenance results. Lost state is rebuilt from the broker; the backup keeps every key with its TTL.",
    {"redis"},
)
platform_logs = _external(
    PLATFORM_LOGS,
    "The services' log files under logs/: rotated daily-hygiene style, scanned for leaked secrets by the "
    "security audit.",
    {"file"},
)
broker_account = _external(
    BROKER_ACCOUNT,
    "The Alpaca account: cash, positions, orders and fills as the broker holds them (read-only for "
    "maintenance). The reference every reconciliation compares against.",
    {"alpaca", "api"},
)
platform_configuration = _external(
    PLATFORM_CONFIGURATION,
    "config/maintenance.yml, .env and the keys they name: backed up with secrets masked, audited for "
    "permissions and key age.",
    {"yaml"},
)
