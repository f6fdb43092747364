"""Months and their NYSE sessions: bounds, which sessions count, which months a run consolidates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import polars as pl

from trading_maintenance.core.common.market_hours import session_bounds, trading_days

NY = "America/New_York"


def month_bounds(month: str) -> tuple[date, date]:
    """First and last calendar day of 'YYYY-MM'."""
    first = date.fromisoformat(month + "-01")
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


@dataclass(frozen=True)
class MonthSessions:
    """The NYSE sessions of a month that count for coverage (closed by `as_of`)."""

    month: str
    frame: pl.DataFrame  # ny_date, open, close (UTC)
    counted_days: tuple[date, ...]  # trading days whose session had closed by as_of
    # per timeframe, what quality.expected_by_day derives from the sessions (the same for every symbol)
    derived: dict = field(default_factory=dict, compare=False, repr=False)


def month_sessions(month: str, as_of: datetime | None = None, calendar_name: str = "XNYS") -> MonthSessions:
    as_of = as_of or datetime.now(timezone.utc)
    days, frame = _month_calendar(month, calendar_name)
    counted = tuple(d for d, close in days if close <= as_of)
    return MonthSessions(month, frame, counted)


@lru_cache(maxsize=64)
def _month_calendar(month: str, calendar_name: str) -> tuple[tuple[tuple[date, datetime], ...], pl.DataFrame]:
    """((day, close) of each session, the sessions' frame) of a month: asked of the exchange
    calendar once per process (~4 ms a month), whatever as_of each caller counts to."""
    first, last = month_bounds(month)
    days = trading_days(first, last, calendar_name)
    bounds = [session_bounds(d, calendar_name) for d in days]
    frame = pl.DataFrame(
        {
            "ny_date": days,
            "session_open": [b[0] for b in bounds],
            "session_close": [b[1] for b in bounds],
        },
        schema={"ny_date": pl.Date, "session_open": pl.Datetime("us", "UTC"), "session_close": pl.Datetime("us", "UTC")},
    )
    return tuple((d, b[1]) for d, b in zip(days, bounds)), frame


def expected_bars(open_: datetime, close: datetime, bar_minutes: int) -> int:
    return math.ceil((close - open_).total_seconds() / 60 / bar_minutes)


def previous_month(month: str) -> str:
    first, _ = month_bounds(month)
    return (first - timedelta(days=1)).isoformat()[:7]


def month_is_final(month: str, moment: datetime, calendar_name: str = "XNYS") -> bool:
    """A month is final once the session of its last trading day has closed."""
    first, last = month_bounds(month)
    days = trading_days(first, last, calendar_name)
    if not days:
        return moment.date() > last
    return session_bounds(days[-1], calendar_name)[1] <= moment


def months_to_consolidate(moment: datetime, calendar_name: str = "XNYS") -> list[tuple[str, str]]:
    """[(month, 'final' | 'so_far')]: the latest complete month, plus the current month so far when
    it is not complete yet and at least one of its sessions has closed."""
    from zoneinfo import ZoneInfo

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    current = moment.astimezone(ZoneInfo(NY)).date().isoformat()[:7]
    if month_is_final(current, moment, calendar_name):
        return [(current, "final")]
    out = [(previous_month(current), "final")]
    if month_sessions(current, moment, calendar_name).counted_days:
        out.append((current, "so_far"))
    return out
