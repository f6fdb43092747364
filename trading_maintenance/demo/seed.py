"""A realistic demo platform, deterministic per seed (relative to the as-of date).

It writes what the real platform writes, with the defects real files have: duplicate and unsorted
bars, a truncated file, an old-schema file without `asset_type`; logs of many sizes and ages; temp
and export files of many ages (some identical); orders, fills, positions and daily performance; and
Redis positions, pending orders (some orphaned), caches with and without TTLs, rate-limit counters,
protected keys and one key of the wrong type.

The demo replaces orders, positions and Redis state wholesale, so it writes only to stores that are
demo stores: each carries a mark (Redis key `demo:store`, table `trading.demo_store`, file
`.demo-store` in the data root) written when the demo first takes an empty store. An embedded store
(created by this project under the data root) or a store named exactly in TRADING_DEMO_ALLOW_URL is
taken when it holds no platform data; anything else is refused before anything is written.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, delete, func, insert, inspect, select, text

from trading_maintenance.core.common.market_hours import session_bounds, trading_days
from trading_maintenance.core.trading import schema as ts
from trading_maintenance.resources.database import ensure_trading_schema

BASE_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "QQQ", "BRK.B", "JPM", "AMD"]
MARKET_DATA_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("timeframe", pa.string()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
        ("asset_type", pa.string()),
    ]
)


DEMO_MARK_KEY = "demo:store"
DEMO_MARK_FILE = ".demo-store"
DEMO_MARK_VALUE = "trading-maintenance demo platform"
ALLOW_URL_ENV = "TRADING_DEMO_ALLOW_URL"
demo_store_table = Table(
    "demo_store",
    MetaData(schema="trading"),
    Column("marked_by", String(64), nullable=False),
    Column("marked_at", DateTime(timezone=True), nullable=False),
)
PLATFORM_TABLES = (ts.orders, ts.fills, ts.positions, ts.daily_performance)
DATA_ROOT_FOLDERS = ("parquet", "logs", "exports", "reports", "backups", "temp")


class DemoStoreRefused(RuntimeError):
    """A store the demo must not write to; the message names the store and what to do."""


def redis_is_marked(client) -> bool:
    value = client.get(DEMO_MARK_KEY)
    return value is not None and value.decode("utf-8", "replace") == DEMO_MARK_VALUE


def redis_platform_keys(client, limit: int = 3) -> list[str]:
    """A few keys that are not maintenance's own results nor the demo mark: the store is in use."""
    found = []
    for key in client.scan_iter(count=500):
        name = key.decode("utf-8", "replace")
        if name != DEMO_MARK_KEY and not name.startswith("maintenance:"):
            found.append(name)
            if len(found) >= limit:
                break
    return found


def database_is_marked(engine: Engine) -> bool:
    if not inspect(engine).has_table(demo_store_table.name, schema="trading"):
        return False
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(demo_store_table).where(demo_store_table.c.marked_by == DEMO_MARK_VALUE)).scalar() > 0


def database_platform_tables(engine: Engine) -> list[str]:
    """Contract tables that hold at least one row."""
    inspector = inspect(engine)
    used = []
    with engine.connect() as conn:
        for table in PLATFORM_TABLES:
            if inspector.has_table(table.name, schema="trading") and conn.execute(select(text("1")).select_from(table).limit(1)).first():
                used.append(f"trading.{table.name}")
    return used


def data_root_platform_files(data_dir: Path, limit: int = 3) -> list[str]:
    found = []
    for folder in DATA_ROOT_FOLDERS:
        for dirpath, _dirs, files in os.walk(data_dir / folder):
            for name in files:
                found.append(os.path.relpath(os.path.join(dirpath, name), data_dir))
                if len(found) >= limit:
                    return found
    return found


def mark_demo_redis(client) -> None:
    """Mark an empty Redis (database) as a demo store; refused when it holds platform data."""
    if redis_is_marked(client):
        return
    keys = redis_platform_keys(client)
    if keys:
        raise DemoStoreRefused(f"Redis holds platform data (e.g. {', '.join(keys)}) and no demo mark; not marked")
    client.set(DEMO_MARK_KEY, DEMO_MARK_VALUE)


def mark_demo_database(engine: Engine) -> None:
    """Mark an empty trading database as a demo store; refused when it holds platform data."""
    if database_is_marked(engine):
        return
    tables = database_platform_tables(engine)
    if tables:
        raise DemoStoreRefused(f"the database holds platform data ({', '.join(tables)}) and no demo mark; not marked")
    ensure_trading_schema(engine)
    demo_store_table.create(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.execute(insert(demo_store_table), [{"marked_by": DEMO_MARK_VALUE, "marked_at": datetime.now(timezone.utc)}])


def check_demo_stores(data_dir: Path, redis_client, engine: Engine, redis_takeable: bool, database_takeable: bool) -> list[str]:
    """Why each store may not be seeded (empty when all may). Reads only.

    A marked store is a demo store. An unmarked one may be taken (`*_takeable`: embedded, or named
    in TRADING_DEMO_ALLOW_URL) only while it holds no platform data."""
    problems = []
    if not data_dir.joinpath(DEMO_MARK_FILE).is_file():
        files = data_root_platform_files(data_dir)
        if files:
            problems.append(f"data root {data_dir} holds files the demo did not write (e.g. {', '.join(files)})")
    if not redis_is_marked(redis_client):
        keys = redis_platform_keys(redis_client)
        if keys:
            problems.append(f"Redis holds platform data without the demo mark (e.g. {', '.join(keys)})")
        elif not redis_takeable:
            problems.append(f"Redis is not the embedded one and not marked as a demo store (name its URL in {ALLOW_URL_ENV})")
    if not database_is_marked(engine):
        tables = database_platform_tables(engine)
        if tables:
            problems.append(f"the database holds platform data without the demo mark ({', '.join(tables)})")
        elif not database_takeable:
            problems.append(f"the database is not the embedded one and not marked as a demo store (name its URL in {ALLOW_URL_ENV})")
    return problems


def symbols_for(count: int) -> list[str]:
    names = list(BASE_SYMBOLS[:count])
    i = 0
    while len(names) < count:
        names.append(f"SYM{i:03d}")
        i += 1
    return names


def _set_age(path: Path, now: float, age_seconds: float) -> None:
    os.utime(path, (now - age_seconds, now - age_seconds))


def _bars(symbol: str, day: date, rng: random.Random, price: float) -> tuple[dict, float]:
    open_utc, close_utc = session_bounds(day)
    minutes = int((close_utc - open_utc).total_seconds() // 60)
    cols: dict[str, list] = {k: [] for k in MARKET_DATA_SCHEMA.names}
    for m in range(minutes):
        o = price
        c = max(0.5, o * (1 + rng.gauss(0, 0.0008)))
        h = max(o, c) * (1 + abs(rng.gauss(0, 0.0003)))
        low = min(o, c) * (1 - abs(rng.gauss(0, 0.0003)))
        cols["symbol"].append(symbol)
        cols["timestamp"].append(open_utc + timedelta(minutes=m))
        cols["timeframe"].append("1min")
        cols["open"].append(round(o, 4))
        cols["high"].append(round(h, 4))
        cols["low"].append(round(low, 4))
        cols["close"].append(round(c, 4))
        cols["volume"].append(rng.randint(100, 50_000))
        cols["asset_type"].append("etf" if symbol in ("SPY", "QQQ") else "stock")
        price = c
    return cols, price


def seed_market_data(data_dir: Path, symbols: list[str], days: list[date], rng: random.Random, now: float) -> dict:
    root = data_dir / "parquet" / "market_data"
    files = rows = duplicated = unsorted = 0
    truncated = old_schema = None
    for s_index, symbol in enumerate(symbols):
        price = 50 + rng.random() * 400
        for d_index, day in enumerate(days):
            cols, price = _bars(symbol, day, rng, price)
            table = pa.table(cols, schema=MARKET_DATA_SCHEMA)
            roll = rng.random()
            if roll < 0.10:  # the collector appended a chunk twice
                table = pa.concat_tables([table, table.slice(0, min(30, table.num_rows))])
                duplicated += 1
            elif roll < 0.18:  # rows written out of order
                order = list(range(table.num_rows))
                rng.shuffle(order)
                table = table.take(pa.array(order))
                unsorted += 1
            path = root / symbol / "1min" / f"{day.isoformat()}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            if s_index == 1 and d_index == len(days) // 2 and old_schema is None:
                legacy = table.drop_columns(["asset_type"]).set_column(
                    1, "timestamp", table.column("timestamp").cast(pa.timestamp("ns"))
                )
                pq.write_table(legacy, path, compression="snappy")
                old_schema = str(path)
            else:
                pq.write_table(table, path, compression="snappy")
            if s_index == 0 and d_index == len(days) // 3 and truncated is None:
                size = path.stat().st_size
                with open(path, "r+b") as handle:
                    handle.truncate(size // 2)
                truncated = str(path)
            close_dt = session_bounds(day)[1]
            _set_age(path, now, max(0.0, now - close_dt.timestamp() - 60))
            # daily bar
            daily = root / symbol / "1day" / f"{day.isoformat()}.parquet"
            daily.parent.mkdir(parents=True, exist_ok=True)
            tc = table.sort_by("timestamp")
            bar = pa.table(
                {
                    "symbol": [symbol], "timestamp": [session_bounds(day)[0]], "timeframe": ["1day"],
                    "open": [tc.column("open")[0].as_py()], "high": [max(tc.column("high").to_pylist())],
                    "low": [min(tc.column("low").to_pylist())], "close": [tc.column("close")[-1].as_py()],
                    "volume": [sum(tc.column("volume").to_pylist())],
                    "asset_type": [tc.column("asset_type")[0].as_py() if "asset_type" in tc.column_names else "stock"],
                },
                schema=MARKET_DATA_SCHEMA,
            )
            pq.write_table(bar, daily, compression="snappy")
            _set_age(daily, now, max(0.0, now - close_dt.timestamp() - 120))
            files += 2
            rows += table.num_rows + 1
    # screener and indicator files, a few days each
    for day in days[-5:]:
        for screener in ("momentum", "volume_spike"):
            path = data_dir / "parquet" / "screener_data" / screener / f"{day.isoformat()}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"symbol": symbols, "score": [rng.random() for _ in symbols]}), path)
        for symbol in symbols[:3]:
            path = data_dir / "parquet" / "technical_indicators" / symbol / "1min" / f"{day.isoformat()}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"symbol": [symbol] * 10, "rsi": [rng.uniform(20, 80) for _ in range(10)]}), path)
    return {
        "market_data_files": files,
        "market_data_rows": rows,
        "files_with_duplicates": duplicated,
        "unsorted_files": unsorted,
        "truncated_file": truncated,
        "old_schema_file": old_schema,
    }


LOG_LINES = [
    "INFO data_collector: fetched {n} bars for {sym} in {ms} ms",
    "INFO strategy_engine: signal {sym} momentum score={score}",
    "WARNING risk_manager: position size for {sym} near limit ({pct}%)",
    "INFO trade_executor: order {oid} submitted {sym} qty={n}",
    "ERROR data_collector: request to polygon timed out after {ms} ms (retry {n})",
]


def _log_lines(rng: random.Random, count: int, start: datetime) -> str:
    out = []
    for i in range(count):
        template = rng.choice(LOG_LINES)
        stamp = (start + timedelta(seconds=i * 3)).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        out.append(
            f"{stamp} "
            + template.format(
                n=rng.randint(1, 500), sym=rng.choice(BASE_SYMBOLS), ms=rng.randint(5, 3000),
                score=round(rng.random(), 3), pct=rng.randint(60, 99), oid=f"{rng.getrandbits(64):016x}",
            )
        )
    return "\n".join(out) + "\n"


def seed_logs(data_dir: Path, rng: random.Random, now: float, big_log: bool) -> dict:
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = datetime.fromtimestamp(now, timezone.utc) - timedelta(days=1)
    sizes = {"trading_system.log": 6000, "scheduler.log": 800, "error.log": 300, "data_collector.log": 12000, "strategy_engine.log": 2500}
    written = 0
    for name, lines in sizes.items():
        (logs / name).write_text(_log_lines(rng, lines, start))
        written += 1
    # rotated history of many ages
    for i, age_days in enumerate([2, 9, 20, 35, 45, 70]):
        rotated = logs / f"trading_system.log.{i + 1}"
        rotated.write_text(_log_lines(rng, 400, start - timedelta(days=age_days)))
        _set_age(rotated, now, age_days * 86400)
        written += 1
    old_gz = logs / "scheduler.log.3.gz"
    with gzip.open(old_gz, "wt") as handle:
        handle.write(_log_lines(rng, 300, start - timedelta(days=50)))
    _set_age(old_gz, now, 50 * 86400)
    written += 1
    if big_log:
        big = logs / "market_stream.log"
        chunk = _log_lines(rng, 20000, start)
        with open(big, "w") as handle:
            while handle.tell() < 101 * 1024 * 1024:
                handle.write(chunk)
        written += 1
    return {"log_files": written, "big_log": big_log}


def seed_files(data_dir: Path, rng: random.Random, now: float, today: date) -> dict:
    temp = data_dir / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, age_hours in enumerate([1, 5, 20, 30, 50, 100, 300]):
        path = temp / f"download_{i}.tmp"
        path.write_bytes(rng.randbytes(2048 * (i + 1)))
        _set_age(path, now, age_hours * 3600)
        count += 1
    exports = data_dir / "exports" / "maintenance"
    exports.mkdir(parents=True, exist_ok=True)
    # the same export saved three times: data cleanup keeps the oldest (large enough to be worth it)
    dup_payload = json.dumps({"report": "duplicate", "rows": list(range(2000))}).encode()
    for i in range(3):
        path = exports / f"copy_{i}.json"
        path.write_bytes(dup_payload)
        _set_age(path, now, 3600 * (i + 2))
        count += 1
    for age_days in (1, 3, 10, 40, 100, 200):
        day = today - timedelta(days=age_days)
        path = exports / f"maintenance_summary_{day.isoformat()}.json"
        path.write_text(json.dumps({"date": day.isoformat(), "tasks": rng.randint(5, 15)}))
        _set_age(path, now, age_days * 86400)
        count += 1
    (data_dir / "exports" / "tradenote").mkdir(parents=True, exist_ok=True)
    (data_dir / "reports" / "maintenance").mkdir(parents=True, exist_ok=True)
    (data_dir / "backups").mkdir(parents=True, exist_ok=True)
    return {"temp_and_export_files": count}


def seed_database(engine, symbols: list[str], days: list[date], rng: random.Random, now_dt: datetime) -> dict:
    ensure_trading_schema(engine)
    orders_rows, fills_rows, positions_rows, perf_rows = [], [], [], []
    order_id = fill_id = 0
    holdings: dict[str, tuple[int, float]] = {}
    cash = Decimal("500000")
    traded = symbols[: min(6, len(symbols))]
    for day in days:
        open_utc, close_utc = session_bounds(day)
        day_pnl = Decimal("0")
        trades = 0
        for _ in range(rng.randint(1, 4)):
            symbol = rng.choice(traded)
            qty, avg = holdings.get(symbol, (0, 0.0))
            side = "sell" if qty > 0 and rng.random() < 0.5 else "buy"
            quantity = rng.randint(1, 10) * 10 if side == "buy" else qty
            price = round(50 + rng.random() * 400, 2)
            when = open_utc + timedelta(minutes=rng.randint(1, int((close_utc - open_utc).total_seconds() // 60) - 1))
            order_id += 1
            commission = Decimal("0.35")
            orders_rows.append(
                {"id": order_id, "client_order_id": f"demo-{order_id:06d}", "broker_order_id": f"b-{rng.getrandbits(48):012x}",
                 "symbol": symbol, "side": side, "order_type": "market", "quantity": quantity, "price": price,
                 "filled_quantity": quantity, "filled_price": price, "status": "filled", "submitted_at": when,
                 "filled_at": when + timedelta(seconds=1), "commission": commission, "strategy_name": "momentum",
                 "created_at": when, "updated_at": when + timedelta(seconds=1)}
            )
            fill_id += 1
            fills_rows.append(
                {"id": fill_id, "order_id": order_id, "trade_id": f"t-{rng.getrandbits(48):012x}", "symbol": symbol, "side": side,
                 "quantity": quantity, "price": price, "commission": commission, "timestamp": when + timedelta(seconds=1), "liquidity": "taker"}
            )
            trades += 1
            if side == "buy":
                new_qty = qty + quantity
                holdings[symbol] = (new_qty, (avg * qty + price * quantity) / new_qty)
                cash -= Decimal(str(price)) * quantity + commission
            else:
                pnl = Decimal(str(round((price - avg) * quantity, 2))) - commission
                positions_rows.append(
                    {"ticker": symbol, "side": "long", "quantity": quantity, "entry_price": round(avg, 4),
                     "entry_time": when - timedelta(days=2), "exit_time": when, "exit_price": price, "status": "closed",
                     "strategy_type": "momentum", "pnl": pnl, "commission": commission, "cost_basis": round(avg * quantity, 2),
                     "market_value": round(price * quantity, 2), "account_id": "demo"}
                )
                holdings.pop(symbol, None)
                cash += Decimal(str(price)) * quantity - commission
                day_pnl += pnl
        perf_rows.append(
            {"date": day, "total_trades": trades, "gross_pnl": day_pnl + Decimal("0.35") * trades, "net_pnl": day_pnl,
             "commission_total": Decimal("0.35") * trades, "portfolio_value": cash + sum(Decimal(str(a * q)) for q, a in holdings.values()),
             "cash_balance": cash, "buying_power": cash * 2, "max_drawdown": round(rng.uniform(0, 0.08), 4), "win_rate": round(rng.uniform(0.4, 0.7), 4)}
        )
    for symbol, (qty, avg) in holdings.items():
        positions_rows.append(
            {"ticker": symbol, "side": "long", "quantity": qty, "entry_price": round(avg, 4), "entry_time": now_dt - timedelta(days=3),
             "exit_time": None, "exit_price": None, "status": "open", "strategy_type": "momentum", "pnl": None, "commission": Decimal("0.35"),
             "cost_basis": round(avg * qty, 2), "market_value": round(avg * qty * 1.01, 2), "account_id": "demo"}
        )
    # orders stuck in flight: one recent, one stuck for hours
    for minutes_ago, status in ((5, "submitted"), (600, "pending")):
        order_id += 1
        when = now_dt - timedelta(minutes=minutes_ago)
        orders_rows.append(
            {"id": order_id, "client_order_id": f"demo-{order_id:06d}", "broker_order_id": f"b-{rng.getrandbits(48):012x}",
             "symbol": traded[0], "side": "buy", "order_type": "limit", "quantity": 10, "price": 100.0, "filled_quantity": 0,
             "filled_price": None, "status": status, "submitted_at": when, "filled_at": None, "commission": 0,
             "strategy_name": "momentum", "created_at": when, "updated_at": when}
        )
    with engine.begin() as conn:
        for table in (ts.fills, ts.orders, ts.positions, ts.daily_performance):
            conn.execute(delete(table))
        # an empty list would become one INSERT of defaults only (a short demo can have no fills)
        for table, rows in ((ts.orders, orders_rows), (ts.fills, fills_rows), (ts.positions, positions_rows), (ts.daily_performance, perf_rows)):
            if rows:
                conn.execute(insert(table), rows)
        align_id_sequences(conn, (ts.orders, ts.fills))
    return {
        "orders": len(orders_rows), "fills": len(fills_rows), "positions": len(positions_rows),
        "daily_performance": len(perf_rows), "open_positions": holdings, "cash": cash,
        "pending_client_order_ids": [r["client_order_id"] for r in orders_rows if r["status"] in ("submitted", "pending")],
        "final_client_order_ids": [r["client_order_id"] for r in orders_rows[-6:-2]],
    }


def align_id_sequences(conn, tables) -> None:
    """After rows were written with explicit ids, move each id sequence past the highest id, so
    the platform's next insert without an id does not collide (PostgreSQL; SQLite needs nothing)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        qualified = conn.dialect.identifier_preparer.format_table(table)
        conn.execute(
            text(f"SELECT setval(pg_get_serial_sequence(:table, 'id'), COALESCE((SELECT max(id) FROM {qualified}), 0) + 1, false)"),
            {"table": qualified},
        )


def seed_redis(client, symbols: list[str], db_summary: dict, rng: random.Random, now_dt: datetime) -> dict:
    written = 0
    pipe = client.pipeline()
    demo_key_patterns = (
        "positions:*", "orders:pending:*", "price_cache:*", "screener_cache:*", "cache:*", "temp:*", "session:*", "ticker_last_seen:*", "rate_limit:*"
    )
    for pattern in demo_key_patterns:
        for key in client.scan_iter(match=pattern, count=500):
            pipe.delete(key)
    pipe.execute()
    pipe = client.pipeline()
    for symbol, (qty, avg) in db_summary["open_positions"].items():
        pipe.hset(f"positions:{symbol}", mapping={"quantity": qty, "side": "long", "avg_entry_price": round(avg, 4),
                                                  "market_value": round(avg * qty * 1.01, 2), "updated_at": now_dt.isoformat()})
        written += 1
    pipe.set("portfolio:cash_balance", str(db_summary["cash"]))
    for coid in db_summary["pending_client_order_ids"] + db_summary["final_client_order_ids"][:2]:
        pipe.hset(f"orders:pending:{coid}", mapping={"symbol": symbols[0], "side": "buy", "quantity": 10, "order_type": "limit",
                                                      "status": "submitted", "submitted_at": now_dt.isoformat(), "broker_order_id": ""})
        written += 1
    for symbol in symbols:
        pipe.set(f"price_cache:{symbol}", f"{rng.uniform(10, 500):.2f}", ex=rng.choice([60, 300, 3600]))
        pipe.set(f"cache:quote:{symbol}", json.dumps({"bid": 1, "ask": 2}))  # no TTL: cache cleanup's work
        written += 2
    pipe.hset("screener_cache:momentum", mapping={s: rng.random() for s in symbols})
    pipe.rpush("cache:recent_signals", *[f"{s}:{rng.random():.3f}" for s in symbols])
    pipe.sadd("cache:watchlist", *symbols)
    pipe.zadd("cache:leaderboard", {s: rng.random() for s in symbols})
    pipe.set("temp:download:lock", "1")
    pipe.set("session:dashboard:abc123", json.dumps({"user": "demo"}), ex=1800)
    pipe.delete("active_tickers")
    pipe.sadd("active_tickers", *symbols)
    for symbol in symbols + ["DELISTED1", "DELISTED2"]:
        pipe.set(f"ticker_last_seen:{symbol}", now_dt.isoformat())
    daily_usage = {"alpaca": (rng.randint(100, 180), 200), "polygon": (rng.randint(3000, 4900), 5000), "finviz": (rng.randint(10, 90), 100)}
    for api, (used, limit) in daily_usage.items():
        pipe.set(f"rate_limit:{api}:daily", used)
        pipe.set(f"rate_limit:{api}:limit", limit)
    pipe.set("trading:emergency_stop", "false")
    pipe.set("config:risk:max_position_pct", "0.1")
    pipe.hset("circuit:polygon", mapping={"state": "closed", "failures": 0})
    pipe.set("positions:CORRUPT", "not-a-hash")  # wrong type: must be reported and skipped
    pipe.execute()
    return {"redis_keys_written": written + 25}


def seed_platform(data_dir: str | Path, redis_client, engine, symbols: int = 8, days: int = 120, seed: int = 42,
                  big_log: bool = False, as_of: date | None = None, redis_takeable: bool = False,
                  database_takeable: bool = False) -> dict:
    """Seed the demo platform; DemoStoreRefused (nothing written) unless every store is a demo store.

    `redis_takeable` / `database_takeable`: the store is the embedded one or named in
    TRADING_DEMO_ALLOW_URL, so it may be marked as a demo store while it holds no platform data."""
    data_dir = Path(data_dir)
    problems = check_demo_stores(data_dir, redis_client, engine, redis_takeable, database_takeable)
    if problems:
        raise DemoStoreRefused("the demo writes only to demo stores; refused, nothing written: " + "; ".join(problems))
    mark_demo_redis(redis_client)
    mark_demo_database(engine)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARK_FILE).write_text(DEMO_MARK_VALUE + "\n")
    rng = random.Random(seed)
    as_of = as_of or datetime.now(timezone.utc).date()
    now_dt = datetime.now(timezone.utc)
    now = now_dt.timestamp()
    sessions = [d for d in trading_days(as_of - timedelta(days=days), as_of - timedelta(days=1))]
    names = symbols_for(symbols)
    summary: dict = {"data_dir": str(data_dir), "symbols": len(names), "trading_days": len(sessions)}
    summary.update(seed_market_data(data_dir, names, sessions, rng, now))
    summary.update(seed_logs(data_dir, rng, now, big_log))
    summary.update(seed_files(data_dir, rng, now, as_of))
    db = seed_database(engine, names, sessions, rng, now_dt)
    summary.update({k: v for k, v in db.items() if k in ("orders", "fills", "positions", "daily_performance")})
    try:
        summary.update(seed_redis(redis_client, names, db, rng, now_dt))
    except Exception as exc:  # noqa: BLE001
        summary["redis"] = f"not seeded: {type(exc).__name__}"
    return summary
