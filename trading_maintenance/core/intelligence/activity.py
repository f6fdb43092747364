"""Trading activity from the trading database: fills per local hour of day."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

MAX_FILLS_READ = 500_000


def fills_per_hour(engine, since: datetime, until: datetime, tz: str) -> dict[int, float]:
    """Mean fills per local hour of day over the days in [since, until)."""
    import sqlalchemy as sa

    from trading_maintenance.core.trading.schema import fills

    query = sa.select(fills.c.timestamp).where(fills.c.timestamp >= since, fills.c.timestamp < until).limit(MAX_FILLS_READ)
    counts: Counter[int] = Counter()
    with engine.connect() as conn:
        for (stamp,) in conn.execute(query):
            moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
            counts[moment.astimezone(ZoneInfo(tz)).hour] += 1
    days = max(1.0, (until - since).total_seconds() / 86400)
    return {hour: round(count / days, 3) for hour, count in counts.items()}


def recent_fills_per_hour(open_engine, until: float, tz: str, days: int) -> tuple[dict[int, float], str]:
    """(fills per hour over the `days` before `until`, "") or ({}, why the trading database was not read):
    the analysis goes on without trading activity rather than failing."""
    end = datetime.fromtimestamp(until, timezone.utc)
    try:
        return fills_per_hour(open_engine(), end - timedelta(days=days), end, tz), ""
    except Exception as exc:  # noqa: BLE001 - named in the result; the rest of the analysis stands
        return {}, f"fills not read from the trading database ({type(exc).__name__}): advice without trading activity"
