"""Portfolio reconciliation: compare the broker, the database and Redis views, per symbol and check.

Pure logic. The broker is the reference: every other view is compared with it. A view is a
`PortfolioView`; readers (database, Redis, broker answers) build them in `reconciliation_sources`.

Checks and kinds:
- position: missing (present at the broker, absent in a view), unexpected (absent at the broker,
  present in a view), quantity_mismatch, side_mismatch, avg_price_mismatch (beyond tolerance %)
- cash: cash_mismatch (beyond tolerance), cash_missing (a view has no cash figure)
- stuck_order: pending/submitted longer than the threshold, in minutes of market time
- orphaned_order: open at the broker, unknown to the database
- vanished_order: open in the database with a broker id the broker no longer lists as open
- fill: missing / unexpected within the lookback window, duplicate (one broker fill recorded twice),
  quantity_mismatch, price_mismatch
Symbols are compared in the broker's spelling (`normalize_symbols`): BTCUSD is BTC/USD, BRK-B is BRK.B.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal

from trading_maintenance.core.trading.instruments import canonical_symbol

ZERO = Decimal(0)
STUCK_STATUSES = ("pending", "submitted", "pending_new", "new", "accepted")


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: Decimal  # signed: negative is short
    avg_price: Decimal | None = None
    market_value: Decimal | None = None

    @property
    def side(self) -> str:
        return "long" if self.quantity > 0 else "short" if self.quantity < 0 else "flat"


@dataclass(frozen=True)
class Order:
    client_order_id: str | None
    broker_order_id: str | None
    symbol: str
    status: str
    submitted_at: datetime | None


@dataclass(frozen=True)
class FillRecord:
    fill_id: str  # the broker's id (DB trade_id; Alpaca activity id or its part after '::')
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    timestamp: datetime


@dataclass
class PortfolioView:
    name: str
    positions: dict[str, Position] = field(default_factory=dict)
    cash: Decimal | None = None
    open_orders: list[Order] = field(default_factory=list)
    fills: list[FillRecord] | None = None  # None: this view has no fill history (Redis)
    problems: list[str] = field(default_factory=list)  # malformed entries, reported and skipped
    known_order_ids: set[str] = field(default_factory=set)  # broker ids this view knows in any status
    known_client_ids: set[str] = field(default_factory=set)
    skipped_keys: set[str] = field(default_factory=set)  # keys of the wrong type: never rewritten
    spellings: dict[str, str] = field(default_factory=dict)  # canonical symbol -> this view's own spelling


def normalize_symbols(*views: PortfolioView) -> dict[str, str]:
    """Rewrite every view's symbols to the broker's spelling (`canonical_symbol`), in place.

    Returns the mapping used ({"BTCUSD": "BTC/USD", ...}, only spellings that changed). Each view keeps
    its own spelling per symbol in `spellings`, so a fix is written back under the key it was read from.
    Two spellings of one symbol in one view are added together and reported in `problems`.
    """
    mapping: dict[str, str] = {}

    def canon(symbol: str) -> str:
        canonical = canonical_symbol(symbol)
        if canonical != symbol:
            mapping[symbol] = canonical
        return canonical

    for view in views:
        positions: dict[str, Position] = {}
        for raw, position in view.positions.items():
            symbol = canon(raw)
            view.spellings.setdefault(symbol, raw)
            held = positions.get(symbol)
            if held is None:
                positions[symbol] = Position(symbol, position.quantity, position.avg_price, position.market_value)
                continue
            view.problems.append(f"{view.name}: {view.spellings[symbol]} and {raw} are both {symbol}; their quantities are added")
            total = held.quantity + position.quantity
            avg = None
            if held.avg_price is not None and position.avg_price is not None and total:
                avg = (abs(held.quantity) * held.avg_price + abs(position.quantity) * position.avg_price) / (
                    abs(held.quantity) + abs(position.quantity))
            value = None if held.market_value is None or position.market_value is None else held.market_value + position.market_value
            positions[symbol] = Position(symbol, total, avg, value)
        view.positions = positions
        view.open_orders = [Order(o.client_order_id, o.broker_order_id, canon(o.symbol), o.status, o.submitted_at)
                            for o in view.open_orders]
        if view.fills is not None:
            view.fills = [FillRecord(f.fill_id, canon(f.symbol), f.side, f.quantity, f.price, f.timestamp) for f in view.fills]
    return dict(sorted(mapping.items()))


@dataclass(frozen=True)
class Discrepancy:
    check: str
    kind: str
    view: str
    symbol: str
    detail: str
    broker: str = ""
    other: str = ""
    severity: str = "warning"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tolerances:
    price_pct: Decimal = Decimal("0.01")
    quantity: Decimal = Decimal("0.000001")
    cash: Decimal = Decimal("1.0")
    stuck_minutes: int = 60
    critical_checks: tuple[str, ...] = ("position", "cash", "orphaned_order", "fill")


def _pct_diff(a: Decimal, b: Decimal) -> Decimal:
    if b == 0:
        return Decimal(0) if a == 0 else Decimal(100)
    return abs(a - b) / abs(b) * 100


def compare_positions(broker: PortfolioView, view: PortfolioView, tol: Tolerances) -> list[Discrepancy]:
    out = []
    for symbol in sorted(set(broker.positions) | set(view.positions)):
        b = broker.positions.get(symbol)
        v = view.positions.get(symbol)
        if b is None or b.quantity == 0:
            if v is not None and v.quantity != 0:
                out.append(Discrepancy("position", "unexpected", view.name, symbol,
                                       f"{view.name} holds {v.quantity} {symbol}; the broker holds none", "0", str(v.quantity)))
            continue
        if v is None or v.quantity == 0:
            out.append(Discrepancy("position", "missing", view.name, symbol,
                                   f"the broker holds {b.quantity} {symbol}; {view.name} has no position", str(b.quantity), "0"))
            continue
        if b.side != v.side:
            out.append(Discrepancy("position", "side_mismatch", view.name, symbol,
                                   f"broker {b.side} {abs(b.quantity)}, {view.name} {v.side} {abs(v.quantity)}", b.side, v.side))
            continue
        if abs(b.quantity - v.quantity) > tol.quantity:
            out.append(Discrepancy("position", "quantity_mismatch", view.name, symbol,
                                   f"broker {b.quantity}, {view.name} {v.quantity} (diff {v.quantity - b.quantity})",
                                   str(b.quantity), str(v.quantity)))
        if b.avg_price is not None and v.avg_price is not None:
            diff = _pct_diff(v.avg_price, b.avg_price)
            if diff > tol.price_pct:
                out.append(Discrepancy("position", "avg_price_mismatch", view.name, symbol,
                                       f"avg entry broker {b.avg_price}, {view.name} {v.avg_price} ({diff:.4f}% > {tol.price_pct}%)",
                                       str(b.avg_price), str(v.avg_price)))
    return out


def compare_cash(broker: PortfolioView, view: PortfolioView, tol: Tolerances) -> list[Discrepancy]:
    if broker.cash is None:
        return []
    if view.cash is None:
        return [Discrepancy("cash", "cash_missing", view.name, "", f"{view.name} has no cash figure", str(broker.cash), "")]
    if abs(view.cash - broker.cash) > tol.cash:
        return [Discrepancy("cash", "cash_mismatch", view.name, "",
                            f"cash broker {broker.cash}, {view.name} {view.cash} (diff {view.cash - broker.cash})",
                            str(broker.cash), str(view.cash))]
    return []


def stuck_orders(view: PortfolioView, now: datetime, tol: Tolerances,
                 market_minutes: Callable[[datetime, datetime], float]) -> list[Discrepancy]:
    out = []
    for order in view.open_orders:
        if order.status not in STUCK_STATUSES or order.submitted_at is None:
            continue
        minutes = market_minutes(order.submitted_at, now)
        if minutes > tol.stuck_minutes:
            ident = order.client_order_id or order.broker_order_id or "?"
            out.append(Discrepancy("stuck_order", "stuck", view.name, order.symbol,
                                   f"order {ident} {order.status} for {minutes:.0f} market minutes (> {tol.stuck_minutes})",
                                   "", ident))
    return out


def compare_orders(broker: PortfolioView, db: PortfolioView) -> list[Discrepancy]:
    out = []
    db_broker_ids = {o.broker_order_id for o in db.open_orders if o.broker_order_id}
    db_client_ids = {o.client_order_id for o in db.open_orders if o.client_order_id}
    known_ids = db_broker_ids | db.known_order_ids
    known_client = db_client_ids | db.known_client_ids
    broker_ids = {o.broker_order_id for o in broker.open_orders}
    broker_client = {o.client_order_id for o in broker.open_orders if o.client_order_id}
    for order in broker.open_orders:
        if order.broker_order_id not in known_ids and (not order.client_order_id or order.client_order_id not in known_client):
            out.append(Discrepancy("orphaned_order", "orphaned", db.name, order.symbol,
                                   f"broker order {order.broker_order_id} ({order.status}) is unknown to the database",
                                   order.broker_order_id or "", ""))
    for order in db.open_orders:
        if not order.broker_order_id:
            continue  # not yet sent: the stuck-order check covers it
        if order.broker_order_id not in broker_ids and order.client_order_id not in broker_client:
            out.append(Discrepancy("vanished_order", "vanished", db.name, order.symbol,
                                   f"database order {order.client_order_id or order.broker_order_id} is {order.status} "
                                   f"but the broker no longer lists {order.broker_order_id} as open", "", order.broker_order_id))
    return out


def compare_fills(broker: PortfolioView, db: PortfolioView, tol: Tolerances) -> list[Discrepancy]:
    if broker.fills is None or db.fills is None:
        return []
    out = []
    b_by_id = {f.fill_id: f for f in broker.fills}
    d_by_id: dict[str, FillRecord] = {}
    for fill in db.fills:
        if fill.fill_id in d_by_id:
            out.append(Discrepancy("fill", "duplicate", db.name, fill.symbol,
                                   f"fill {fill.fill_id} is recorded more than once in the database", "1", "2+"))
        d_by_id[fill.fill_id] = fill
    for fid in sorted(set(b_by_id) | set(d_by_id)):
        b, d = b_by_id.get(fid), d_by_id.get(fid)
        if d is None:
            out.append(Discrepancy("fill", "missing", db.name, b.symbol,
                                   f"broker fill {fid} ({b.side} {b.quantity} @ {b.price}) is not in the database",
                                   f"{b.quantity}@{b.price}", ""))
        elif b is None:
            out.append(Discrepancy("fill", "unexpected", db.name, d.symbol,
                                   f"database fill {fid} ({d.side} {d.quantity} @ {d.price}) is unknown to the broker",
                                   "", f"{d.quantity}@{d.price}"))
        else:
            if abs(b.quantity - d.quantity) > tol.quantity or b.side != d.side:
                out.append(Discrepancy("fill", "quantity_mismatch", db.name, b.symbol,
                                       f"fill {fid}: broker {b.side} {b.quantity}, database {d.side} {d.quantity}",
                                       f"{b.side} {b.quantity}", f"{d.side} {d.quantity}"))
            if _pct_diff(d.price, b.price) > tol.price_pct:
                out.append(Discrepancy("fill", "price_mismatch", db.name, b.symbol,
                                       f"fill {fid}: broker price {b.price}, database {d.price}", str(b.price), str(d.price)))
    return out


def reconcile(broker: PortfolioView, db: PortfolioView, redis: PortfolioView, now: datetime, tol: Tolerances,
              market_minutes: Callable[[datetime, datetime], float]) -> list[Discrepancy]:
    """Every discrepancy between the broker and the two platform views, severity set by check."""
    found: list[Discrepancy] = []
    for view in (db, redis):
        found += compare_positions(broker, view, tol)
        found += compare_cash(broker, view, tol)
        found += stuck_orders(view, now, tol, market_minutes)
    found += compare_orders(broker, db)
    found += compare_fills(broker, db, tol)
    return [
        Discrepancy(**{**d.as_dict(), "severity": "critical" if d.check in tol.critical_checks else "warning"})
        for d in found
    ]


def summarize(discrepancies: list[Discrepancy]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in discrepancies:
        counts[d.check] = counts.get(d.check, 0) + 1
    return counts


@dataclass(frozen=True)
class RedisFix:
    action: str  # "set_position" / "delete_position" / "set_cash"
    key: str
    value: dict | str | None
    reason: str


def plan_redis_fixes(broker: PortfolioView, redis: PortfolioView, discrepancies: list[Discrepancy],
                     now_iso: str, skip_keys: set[str] = frozenset()) -> list[RedisFix]:
    """Refresh only what differs in the Redis view from the broker's answer (never the broker)."""
    fixes: list[RedisFix] = []
    symbols = sorted({d.symbol for d in discrepancies if d.view == redis.name and d.check == "position"})
    for symbol in symbols:
        key = f"positions:{redis.spellings.get(symbol, symbol)}"
        if key in skip_keys:
            continue
        b = broker.positions.get(symbol)
        if b is None or b.quantity == 0:
            fixes.append(RedisFix("delete_position", key, None, "the broker holds no position"))
        else:
            fixes.append(RedisFix("set_position", key, {
                "quantity": format(abs(b.quantity), "f"), "side": b.side,
                "avg_entry_price": format(b.avg_price, "f") if b.avg_price is not None else "",
                "market_value": format(b.market_value, "f") if b.market_value is not None else "", "updated_at": now_iso,
            }, f"broker holds {b.quantity}"))
    if broker.cash is not None and any(d.view == redis.name and d.check == "cash" for d in discrepancies):
        if "portfolio:cash_balance" not in skip_keys:
            fixes.append(RedisFix("set_cash", "portfolio:cash_balance", format(broker.cash, "f"), f"broker cash {broker.cash}"))
    return fixes


def report_markdown(discrepancies: list[Discrepancy], header: dict) -> str:
    lines = ["# Portfolio reconciliation", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", f"{len(discrepancies)} discrepancies", ""]
    if discrepancies:
        lines += ["| severity | check | kind | view | symbol | detail |", "|---|---|---|---|---|---|"]
        for d in discrepancies:
            lines.append(f"| {d.severity} | {d.check} | {d.kind} | {d.view} | {d.symbol} | {d.detail.replace('|', '/')} |")
    return "\n".join(lines)
