"""TradeNote "Template" CSV: build it from fills, parse it back, replay it as TradeNote does, and metrics.

Pure logic (no Dagster, no database): the asset reads fills and passes them here.

- Side codes come from the running position per symbol: B (buy opening/adding long), S (sell long),
  SS (sell short, opening/adding), BC (buy to cover). A fill that crosses zero (a flip) becomes two
  rows: the closing part and the opening part, fees split pro rata by quantity.
- Gross Proceeds is the signed cash flow (buys negative), Net Proceeds is gross minus every fee.
- Dates and times are wall-clock in the journal's time zone (DST handled by zoneinfo).
- The file never ends with a newline: TradeNote fails on a trailing empty row.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

HEADER = [
    "Account", "T/D", "S/D", "Currency", "Type", "Side", "Symbol", "Qty", "Price", "Exec Time", "Comm",
    "SEC", "TAF", "NSCC", "Nasdaq", "ECN Remove", "ECN Add", "Gross Proceeds", "Net Proceeds", "Clr Broker", "Liq", "Note",
]
FEE_COLUMNS = ["Comm", "SEC", "TAF", "NSCC", "Nasdaq", "ECN Remove", "ECN Add"]
SIDES = ("B", "S", "SS", "BC")
CENT = Decimal("0.01")
ZERO = Decimal(0)
T1_SETTLEMENT_FROM = date(2024, 5, 28)  # US equities moved from T+2 to T+1
# Contract multiplier per Type, for checking proceeds; a future's multiplier depends on the contract.
TYPE_MULTIPLIERS = {"stock": Decimal(1), "forex": Decimal(1), "call": Decimal(100), "put": Decimal(100)}
SPLIT_NOTE = "split of "


@dataclass(frozen=True)
class Fill:
    """One execution as the database holds it (UTC timestamp, side 'buy'/'sell', positive quantity)."""

    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    timestamp: datetime
    commission: Decimal = ZERO
    trade_id: str = ""
    liquidity: str = ""
    multiplier: Decimal = Decimal(1)
    asset_type: str = "stock"

    @property
    def signed_qty(self) -> Decimal:
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass
class Row:
    account: str
    trade_date: date
    settle_date: date
    type: str
    side: str
    symbol: str
    qty: Decimal
    price: Decimal
    exec_time: str
    comm: Decimal
    gross: Decimal
    net: Decimal
    liq: str = ""
    note: str = ""
    currency: str = "USD"
    fees: dict[str, Decimal] = field(default_factory=dict)

    def as_list(self) -> list[str]:
        fees = {c: self.fees.get(c, ZERO) for c in FEE_COLUMNS}
        fees["Comm"] = self.comm
        return [
            self.account, self.trade_date.strftime("%m/%d/%Y"), self.settle_date.strftime("%m/%d/%Y"), self.currency,
            self.type, self.side, self.symbol, fmt(self.qty), fmt(self.price), self.exec_time,
            *[fmt(fees[c]) for c in FEE_COLUMNS], fmt(self.gross), fmt(self.net), "", self.liq, self.note,
        ]


def fmt(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros ('12.5', '-1000', '0')."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    text = format(value.normalize(), "f")
    return text


def q(value) -> Decimal:
    return Decimal(str(value))


def settlement_date(trade_date: date, next_session) -> date:
    """T+1 (T+2 before 2024-05-28) in trading sessions; next_session(d) returns the session after d."""
    steps = 1 if trade_date >= T1_SETTLEMENT_FROM else 2
    day = trade_date
    for _ in range(steps):
        day = next_session(day)
    return day


def weekday_next_session(day: date) -> date:
    """Fallback when no exchange calendar is given: the next weekday."""
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def day_bounds_utc(day: date, tz_name: str = "America/New_York") -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in the journal's zone, as UTC (23 or 25 hours on DST days)."""
    tz = ZoneInfo(tz_name)
    start = datetime.combine(day, time(0), tz).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(timezone.utc)
    return start, end


def build_rows(
    fills: list[Fill],
    opening_positions: dict[str, Decimal] | None = None,
    account: str = "trading-platform",
    tz_name: str = "America/New_York",
    next_session=weekday_next_session,
) -> list[Row]:
    """Template rows for a day's fills, in execution order, with side codes from the running position.

    `opening_positions` is the signed position per symbol before the first fill (carried overnight).
    """
    tz = ZoneInfo(tz_name)
    position: dict[str, Decimal] = defaultdict(Decimal, {k: q(v) for k, v in (opening_positions or {}).items()})
    rows: list[Row] = []
    for fill in sorted(fills, key=lambda f: (f.timestamp, f.trade_id)):
        local = fill.timestamp.astimezone(tz)
        trade_date = local.date()
        settle = settlement_date(trade_date, next_session)
        before = position[fill.symbol]
        after = before + fill.signed_qty
        if fill.side == "buy":
            closing = min(fill.quantity, -before) if before < 0 else ZERO
            codes = ("BC", "B")
        else:
            closing = min(fill.quantity, before) if before > 0 else ZERO
            codes = ("S", "SS")
        parts = [(codes[0], closing), (codes[1], fill.quantity - closing)]
        parts = [(code, qty) for code, qty in parts if qty > 0]
        for index, (code, qty) in enumerate(parts):
            if len(parts) == 1:
                comm = q(fill.commission)
            elif index == 0:
                comm = q(fill.commission) * qty / fill.quantity
            else:  # the remainder, so the two rows' fees add up exactly
                comm = q(fill.commission) - rows[-1].comm
            notional = qty * q(fill.price) * q(fill.multiplier)
            gross = -notional if fill.side == "buy" else notional
            rows.append(Row(
                account=account, trade_date=trade_date, settle_date=settle, type=fill.asset_type, side=code,
                symbol=fill.symbol, qty=qty, price=q(fill.price), exec_time=local.strftime("%H:%M:%S"),
                comm=comm, gross=gross, net=gross - comm, liq=fill.liquidity or "",
                note=(f"{SPLIT_NOTE}{fill.trade_id}" if len(parts) == 2 else fill.trade_id) if fill.trade_id else "",
            ))
        position[fill.symbol] = after
    return rows


def to_csv(rows: list[Row]) -> str:
    """The CSV text: header, one line per row, NO trailing newline."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(row.as_list())
    return buffer.getvalue().rstrip("\n")


class TemplateError(ValueError):
    """The CSV is not a valid TradeNote Template file."""


def parse_csv(text: str) -> list[dict[str, str]]:
    """Parse a Template CSV strictly (header exactly, no empty rows, valid dates/times/sides/numbers)."""
    if text.endswith("\n") or text.endswith("\r"):
        raise TemplateError("file ends with an empty line (TradeNote fails on it)")
    reader = csv.reader(io.StringIO(text))
    lines = list(reader)
    if not lines or lines[0] != HEADER:
        raise TemplateError("header differs from TradeNote's Template header")
    out = []
    for number, values in enumerate(lines[1:], start=2):
        if not values or all(v == "" for v in values):
            raise TemplateError(f"line {number}: empty row")
        if len(values) != len(HEADER):
            raise TemplateError(f"line {number}: {len(values)} columns, expected {len(HEADER)}")
        row = dict(zip(HEADER, values))
        try:
            datetime.strptime(row["T/D"], "%m/%d/%Y")
            datetime.strptime(row["S/D"], "%m/%d/%Y")
            datetime.strptime(row["Exec Time"], "%H:%M:%S")
            for column in ["Qty", "Price", "Gross Proceeds", "Net Proceeds", *FEE_COLUMNS]:
                Decimal(row[column])
        except (ValueError, ArithmeticError) as exc:
            raise TemplateError(f"line {number}: {exc}") from None
        if row["Side"] not in SIDES:
            raise TemplateError(f"line {number}: side {row['Side']!r} is not one of {SIDES}")
        if Decimal(row["Qty"]) <= 0:
            raise TemplateError(f"line {number}: quantity must be positive")
        out.append(row)
    return out


def exported_trade_ids(text: str) -> set[str]:
    """The fill ids a written Template CSV holds (its Note column), read leniently."""
    reader = csv.DictReader(io.StringIO(text))
    return {(row.get("Note") or "").removeprefix(SPLIT_NOTE) for row in reader if row.get("Note")}


@dataclass
class ReplayedTrade:
    symbol: str
    type: str
    direction: str  # long / short
    trade_date: str
    executions: int
    quantity: Decimal
    gross: Decimal
    net: Decimal
    closed: bool


def replay(rows: list[dict[str, str]]) -> list[ReplayedTrade]:
    """Group executions into trades as TradeNote does: per symbol, type, long/short and trade date,
    closing a trade when bought quantity equals sold quantity. P&L is the sum of the proceeds columns.
    """
    open_trades: dict[tuple, ReplayedTrade] = {}
    balance: dict[tuple, Decimal] = {}
    done: list[ReplayedTrade] = []
    for row in rows:
        side = row["Side"]
        direction = "long" if side in ("B", "S") else "short"
        key = (row["Symbol"], row["Type"], direction, row["T/D"])
        trade = open_trades.get(key)
        if trade is None:
            trade = ReplayedTrade(row["Symbol"], row["Type"], direction, row["T/D"], 0, ZERO, ZERO, ZERO, False)
            open_trades[key] = trade
            balance[key] = ZERO
        qty = Decimal(row["Qty"])
        balance[key] += qty if side in ("B", "BC") else -qty
        if side in ("B", "SS"):
            trade.quantity += qty
        trade.executions += 1
        trade.gross += Decimal(row["Gross Proceeds"])
        trade.net += Decimal(row["Net Proceeds"])
        if balance[key] == 0:
            trade.closed = True
            done.append(trade)
            del open_trades[key]
    return done + list(open_trades.values())


def replay_check(rows: list[dict[str, str]]) -> list[str]:
    """Row-level consistency a journal relies on: proceeds sign and size, net = gross - fees."""
    problems = []
    for number, row in enumerate(rows, start=2):
        qty, price = Decimal(row["Qty"]), Decimal(row["Price"])
        gross, net = Decimal(row["Gross Proceeds"]), Decimal(row["Net Proceeds"])
        fees = sum((Decimal(row[c]) for c in FEE_COLUMNS), ZERO)
        buy = row["Side"] in ("B", "BC")
        if (buy and gross > 0) or (not buy and gross < 0):
            problems.append(f"line {number}: gross proceeds {gross} has the wrong sign for side {row['Side']}")
        multiplier = TYPE_MULTIPLIERS.get(row["Type"])
        if multiplier is not None and abs(abs(gross) - qty * price * multiplier) > CENT:
            problems.append(f"line {number}: |gross| {abs(gross)} != qty x price x {multiplier} {qty * price * multiplier}")
        if abs((gross - fees) - net) > Decimal("0.000001"):
            problems.append(f"line {number}: net {net} != gross {gross} - fees {fees}")
    return problems


@dataclass
class RealisedPnl:
    gross: Decimal = ZERO
    net: Decimal = ZERO
    closed_trades: int = 0
    carried_symbols: list[str] = field(default_factory=list)  # open at the day's start: not comparable
    open_symbols: list[str] = field(default_factory=list)  # still open at the day's end


def realised_pnl(fills: list[Fill], opening_positions: dict[str, Decimal] | None = None) -> RealisedPnl:
    """The database side of the check: average-cost realised P&L of position cycles (flat -> flat)
    that open and close within the day. Cycles open at the day's start or end are listed, not counted.
    """
    result = RealisedPnl()
    state: dict[str, dict] = {}
    for symbol, qty in (opening_positions or {}).items():
        if q(qty) != 0:
            state[symbol] = {"pos": q(qty), "avg": None, "gross": ZERO, "fees": ZERO, "carried": True}
            result.carried_symbols.append(symbol)
    for fill in sorted(fills, key=lambda f: (f.timestamp, f.trade_id)):
        s = state.setdefault(fill.symbol, {"pos": ZERO, "avg": ZERO, "gross": ZERO, "fees": ZERO, "carried": False})
        remaining = fill.quantity
        direction = 1 if fill.side == "buy" else -1
        price = q(fill.price) * q(fill.multiplier)
        fee_per_unit = q(fill.commission) / fill.quantity
        while remaining > 0:
            pos = s["pos"]
            if pos == 0 or (pos > 0) == (direction > 0):  # opening or adding
                new_pos = pos + direction * remaining
                if s["avg"] is not None:
                    s["avg"] = (abs(pos) * s["avg"] + remaining * price) / abs(new_pos)
                s["pos"] = new_pos
                s["fees"] += fee_per_unit * remaining
                remaining = ZERO
            else:  # reducing
                closing = min(remaining, abs(pos))
                if s["avg"] is not None:
                    s["gross"] += (price - s["avg"]) * closing * (1 if pos > 0 else -1)
                s["fees"] += fee_per_unit * closing
                s["pos"] = pos + direction * closing
                remaining -= closing
                if s["pos"] == 0:
                    if not s["carried"]:
                        result.gross += s["gross"]
                        result.net += s["gross"] - s["fees"]
                        result.closed_trades += 1
                    s.update(avg=ZERO, gross=ZERO, fees=ZERO, carried=False)
    result.open_symbols = sorted(sym for sym, s in state.items() if s["pos"] != 0)
    return result


def closed_trade_pnl(trades: list[ReplayedTrade]) -> tuple[Decimal, Decimal, int]:
    closed = [t for t in trades if t.closed]
    return sum((t.gross for t in closed), ZERO), sum((t.net for t in closed), ZERO), len(closed)


def cents(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def performance_metrics(trades: list[ReplayedTrade]) -> dict:
    """Portfolio performance of the day's closed trades (net P&L per trade)."""
    closed = [t for t in trades if t.closed]
    pnls = [float(t.net) for t in closed]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit, gross_loss = sum(wins), -sum(losses)
    equity, peak, max_dd = 0.0, 0.0, 0.0
    for p in pnls:
        equity += p
        peak = max(peak, equity)
        max_dd = max(max_dd, peak - equity)
    n = len(pnls)
    return {
        "trades": n,
        "open_trades": len(trades) - n,
        "winning_trades": len(wins),
        "losing_trades": len(losses),
        "win_rate": round(len(wins) / n, 6) if n else 0.0,
        "profit_factor": round(gross_profit / gross_loss, 6) if gross_loss else None,  # None: no losing trade
        "expectancy": round(sum(pnls) / n, 6) if n else 0.0,
        "gross_pnl": float(cents(sum((t.gross for t in closed), ZERO))),
        "net_pnl": float(cents(sum((t.net for t in closed), ZERO))),
        "fees": float(cents(sum((t.gross - t.net for t in closed), ZERO))),
        "largest_win": round(max(wins), 2) if wins else 0.0,
        "largest_loss": round(min(losses), 2) if losses else 0.0,
        "max_drawdown": round(max_dd, 2),
    }


def risk_statistics(trades: list[ReplayedTrade]) -> dict:
    """Dispersion and tail of the day's closed-trade P&L."""
    pnls = sorted(float(t.net) for t in trades if t.closed)
    n = len(pnls)
    mean = sum(pnls) / n if n else 0.0
    var = sum((p - mean) ** 2 for p in pnls) / (n - 1) if n > 1 else 0.0
    std = math.sqrt(var)
    downside = [min(0.0, p) for p in pnls]
    dstd = math.sqrt(sum(d * d for d in downside) / n) if n else 0.0
    tail = pnls[: max(1, int(math.ceil(n * 0.05)))] if n else []
    gains = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    return {
        "pnl_std": round(std, 6),
        "pnl_mean": round(mean, 6),
        "sharpe_per_trade": round(mean / std, 6) if std else None,
        "sortino_per_trade": round(mean / dstd, 6) if dstd else None,
        "value_at_risk_95": round(-pnls[max(0, math.ceil(n * 0.05) - 1)], 2) if n else 0.0,  # nearest rank
        "expected_shortfall_95": round(-sum(tail) / len(tail), 2) if tail else 0.0,
        "avg_win": round(sum(gains) / len(gains), 6) if gains else 0.0,
        "avg_loss": round(sum(losses) / len(losses), 6) if losses else 0.0,
        "payoff_ratio": round((sum(gains) / len(gains)) / abs(sum(losses) / len(losses)), 6) if gains and losses else None,
        "symbols": sorted({t.symbol for t in trades}),
    }
