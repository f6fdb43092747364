"""Readers that turn the broker's answers, the trading database and Redis into `PortfolioView`s.

No Dagster here. Malformed entries (a Redis key of the wrong type, a number that does not parse) are
recorded in `view.problems` and skipped; they never stop the reconciliation.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select

from trading_maintenance.core.reconciliation.compare import FillRecord, Order, PortfolioView, Position
from trading_maintenance.core.trading import schema as ts


def parse_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _dec(value) -> Decimal:
    if isinstance(value, bytes):
        value = value.decode()
    return Decimal(str(value))


def normalize_fill_id(value: str | None) -> str:
    """Alpaca activity ids are '<time>::<uuid>'; the uuid is the stable part."""
    value = (value or "").strip()
    return value.split("::", 1)[1] if "::" in value else value


def market_minutes_between(start: datetime, end: datetime, calendar_name: str = "XNYS") -> float:
    """Minutes the exchange was in a regular session between start and end."""
    import pandas as pd

    from trading_maintenance.core.common.market_hours import calendar

    if end <= start:
        return 0.0
    cal = calendar(calendar_name)
    s = max(pd.Timestamp(start).tz_convert("UTC").ceil("min"), cal.first_minute)
    e = min(pd.Timestamp(end).tz_convert("UTC").floor("min"), cal.last_minute)
    if e <= s:
        return 0.0
    return float(len(cal.minutes_in_range(s, e)))


# -- broker ------------------------------------------------------------------------------------
def broker_view(client, fills_after: datetime, fills_until: datetime) -> PortfolioView:
    """Ask the broker (any failure raises BrokerError: never an empty portfolio)."""
    from trading_maintenance.core.trading.broker_data import to_decimal

    view = PortfolioView("broker")
    account = client.get_account()
    view.cash = to_decimal(account.get("cash"), "account cash")
    for raw in client.get_positions():
        symbol = raw.get("symbol")
        qty = to_decimal(raw.get("qty"), f"qty of {symbol}")
        if raw.get("side") == "short" and qty > 0:
            qty = -qty
        view.positions[symbol] = Position(
            symbol, qty, to_decimal(raw.get("avg_entry_price"), f"avg_entry_price of {symbol}"),
            to_decimal(raw["market_value"], "market_value") if raw.get("market_value") not in (None, "") else None,
        )
    for raw in client.get_open_orders():
        view.open_orders.append(Order(raw.get("client_order_id"), raw.get("id"), raw.get("symbol", ""), raw.get("status", ""),
                                      parse_time(raw.get("submitted_at") or raw.get("created_at"))))
    view.fills = []
    seen: set[str] = set()
    for raw in client.get_fill_activities(after=fills_after.isoformat(), until=fills_until.isoformat()):
        fill_id = normalize_fill_id(raw.get("id"))
        if fill_id in seen:  # one execution listed under two activity ids: counted once
            continue
        seen.add(fill_id)
        view.fills.append(FillRecord(
            fill_id, raw.get("symbol", ""), raw.get("side", ""),
            to_decimal(raw.get("qty"), "fill qty"), to_decimal(raw.get("price"), "fill price"),
            parse_time(raw.get("transaction_time")),
        ))
    return view


# -- database ----------------------------------------------------------------------------------
def db_view(engine, fills_after: datetime, fills_until: datetime, broker_order_ids: list[str] = (),
            broker_client_ids: list[str] = ()) -> PortfolioView:
    view = PortfolioView("database")
    with engine.connect() as conn:
        agg: dict[str, list] = {}
        for row in conn.execute(select(ts.positions).where(ts.positions.c.status == "open")).mappings():
            try:
                qty = _dec(row["quantity"])
                price = _dec(row["entry_price"])
            except (InvalidOperation, TypeError):
                view.problems.append(f"positions id {row['id']}: malformed quantity or entry_price")
                continue
            signed = -abs(qty) if row["side"] == "short" else abs(qty)
            entry = agg.setdefault(row["ticker"], [Decimal(0), Decimal(0)])
            entry[0] += signed
            entry[1] += abs(qty) * price
        for symbol, (qty, cost) in agg.items():
            view.positions[symbol] = Position(symbol, qty, (cost / abs(qty)) if qty else None)
        perf = conn.execute(
            select(ts.daily_performance.c.cash_balance).order_by(ts.daily_performance.c.date.desc()).limit(1)
        ).first()
        view.cash = _dec(perf[0]) if perf is not None and perf[0] is not None else None
        for row in conn.execute(select(ts.orders).where(ts.orders.c.status.in_(ts.ORDER_OPEN_STATUSES))).mappings():
            view.open_orders.append(Order(row["client_order_id"], row["broker_order_id"], row["symbol"], row["status"],
                                          parse_time(row["submitted_at"] or row["created_at"])))
        ids = [i for i in broker_order_ids if i]
        if ids:
            view.known_order_ids = {r[0] for r in conn.execute(
                select(ts.orders.c.broker_order_id).where(ts.orders.c.broker_order_id.in_(ids)))}
        cids = [i for i in broker_client_ids if i]
        if cids:
            view.known_client_ids = {r[0] for r in conn.execute(
                select(ts.orders.c.client_order_id).where(ts.orders.c.client_order_id.in_(cids)))}
        view.fills = []
        query = select(ts.fills).where(ts.fills.c.timestamp > fills_after, ts.fills.c.timestamp < fills_until)
        for row in conn.execute(query).mappings():
            fill_id = normalize_fill_id(row["trade_id"]) or f"db-fill-{row['id']}"
            view.fills.append(FillRecord(fill_id, row["symbol"], row["side"], _dec(row["quantity"]), _dec(row["price"]),
                                         parse_time(row["timestamp"])))
    return view


def count_rows(engine, table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# -- Redis -------------------------------------------------------------------------------------
def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_view(client, scan_count: int = 500) -> PortfolioView:
    view = PortfolioView("redis")
    for key in client.scan_iter(match="positions:*", count=scan_count):
        name = _text(key)
        kind = _text(client.type(key))
        if kind != "hash":
            view.problems.append(f"{name}: expected a hash, found {kind}; skipped")
            view.skipped_keys.add(name)
            continue
        data = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
        symbol = name.split(":", 1)[1]
        try:
            qty = Decimal(data.get("quantity", ""))
            avg = Decimal(data["avg_entry_price"]) if data.get("avg_entry_price") else None
        except InvalidOperation:
            view.problems.append(f"{name}: malformed quantity or avg_entry_price; skipped")
            view.skipped_keys.add(name)
            continue
        if data.get("side", "").lower() == "short" and qty > 0:
            qty = -qty
        view.positions[symbol] = Position(symbol, qty, avg)
    if client.exists("portfolio:cash_balance"):
        kind = _text(client.type("portfolio:cash_balance"))
        if kind != "string":
            view.problems.append(f"portfolio:cash_balance: expected a string, found {kind}; skipped")
            view.skipped_keys.add("portfolio:cash_balance")
        else:
            try:
                view.cash = Decimal(_text(client.get("portfolio:cash_balance")))
            except InvalidOperation:
                view.problems.append("portfolio:cash_balance: not a decimal; skipped")
                view.skipped_keys.add("portfolio:cash_balance")
    for key in client.scan_iter(match="orders:pending:*", count=scan_count):
        name = _text(key)
        kind = _text(client.type(key))
        if kind != "hash":
            view.problems.append(f"{name}: expected a hash, found {kind}; skipped")
            continue
        data = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
        try:
            submitted = parse_time(data.get("submitted_at"))
        except ValueError:
            view.problems.append(f"{name}: malformed submitted_at; skipped")
            continue
        view.open_orders.append(Order(name.split(":", 2)[2], data.get("broker_order_id") or None, data.get("symbol", ""),
                                      data.get("status", "pending"), submitted))
    return view


def apply_redis_fixes(client, fixes) -> list[str]:
    """Apply planned fixes to Redis only; returns what changed, in words."""
    changed = []
    for fix in fixes:
        if fix.action == "set_position":
            pipe = client.pipeline()
            pipe.delete(fix.key)
            pipe.hset(fix.key, mapping=fix.value)
            pipe.execute()
            changed.append(f"set {fix.key} = {fix.value['side']} {fix.value['quantity']} @ {fix.value['avg_entry_price']} ({fix.reason})")
        elif fix.action == "delete_position":
            client.delete(fix.key)
            changed.append(f"deleted {fix.key} ({fix.reason})")
        elif fix.action == "set_cash":
            client.set(fix.key, fix.value)
            changed.append(f"set {fix.key} = {fix.value} ({fix.reason})")
    return changed
