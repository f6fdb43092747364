"""Market-hours-aware cadence: often while the market is open, rarely otherwise."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from trading_maintenance.core.common.market_hours import is_market_open


def health_check_due(
    scheduled: datetime,
    market_minutes: int = 5,
    off_hours_minutes: int = 60,
    calendar_name: str = "XNYS",
    timezone: str = "America/New_York",
) -> tuple[bool, str]:
    """Whether the tick at `scheduled` (a multiple of the market-hours interval) should run.

    During a regular session every tick runs; otherwise only ticks on the off-hours grid
    (minutes since local midnight divisible by off_hours_minutes).
    """
    local = scheduled.astimezone(ZoneInfo(timezone))
    if is_market_open(scheduled, calendar_name):
        return True, f"market open at {local:%Y-%m-%d %H:%M %Z}: checking every {market_minutes} min"
    minute_of_day = local.hour * 60 + local.minute
    if minute_of_day % off_hours_minutes == 0:
        return True, f"market closed at {local:%Y-%m-%d %H:%M %Z}: off-hours check (every {off_hours_minutes} min)"
    return False, f"market closed at {local:%Y-%m-%d %H:%M %Z}: off-hours checks run every {off_hours_minutes} min"
