"""NYSE sessions from a real exchange calendar (holidays and early closes included)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@lru_cache(maxsize=4)
def calendar(name: str = "XNYS"):
    import exchange_calendars as xcals

    return xcals.get_calendar(name, start="2015-01-01")


def _utc(moment: datetime) -> pd.Timestamp:
    import pandas as pd  # heavy: loaded on the first calendar question, not at import

    ts = pd.Timestamp(moment)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def is_market_open(moment: datetime, calendar_name: str = "XNYS") -> bool:
    """True during a regular session: open <= moment < close (early closes respected)."""
    cal = calendar(calendar_name)
    ts = _utc(moment).floor("min")
    if ts < cal.first_minute or ts > cal.last_minute:
        raise ValueError(f"{moment.isoformat()} is outside the {calendar_name} calendar's range")
    return bool(cal.is_open_on_minute(ts, ignore_breaks=True))


def is_trading_day(day: date, calendar_name: str = "XNYS") -> bool:
    import pandas as pd  # heavy: loaded on the first calendar question, not at import

    return bool(calendar(calendar_name).is_session(pd.Timestamp(day)))


def session_bounds(day: date, calendar_name: str = "XNYS") -> tuple[datetime, datetime]:
    """(open, close) in UTC of the trading day; ValueError when it is not a trading day."""
    import pandas as pd  # heavy: loaded on the first calendar question, not at import

    cal = calendar(calendar_name)
    session = pd.Timestamp(day)
    if not cal.is_session(session):
        raise ValueError(f"{day.isoformat()} is not a {calendar_name} trading day")
    return cal.session_open(session).to_pydatetime(), cal.session_close(session).to_pydatetime()


def trading_days(start: date, end: date, calendar_name: str = "XNYS") -> list[date]:
    """Trading days from start to end inclusive."""
    import pandas as pd  # heavy: loaded on the first calendar question, not at import

    cal = calendar(calendar_name)
    return [ts.date() for ts in cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
