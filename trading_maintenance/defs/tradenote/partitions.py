"""Daily partitions on NYSE trading days: weekdays minus the exchange's holidays (exchange_calendars)."""

from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd

from trading_maintenance.core.market_hours import calendar
from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.settings import get_settings


def nyse_holidays(start: date, calendar_name: str = "XNYS") -> list[datetime]:
    """Weekdays from start to the calendar's last session that are not sessions."""
    cal = calendar(calendar_name)
    end = cal.last_session.date()
    sessions = {ts.date() for ts in cal.sessions_in_range(pd.Timestamp(max(start, cal.first_session.date())), pd.Timestamp(end))}
    out, day = [], start
    while day <= end:
        if day.weekday() < 5 and day not in sessions:
            out.append(datetime(day.year, day.month, day.day))
        day += timedelta(days=1)
    return out


def _build() -> dg.TimeWindowPartitionsDefinition:
    scheduling = get_settings().maintenance.scheduling
    start = scheduling.partitions_start_date
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        start=start,
        fmt="%Y-%m-%d",
        timezone=TIMEZONE,
        end_offset=1,  # today's session is a partition as soon as it starts (the export runs at 18:00)
        exclusions=nyse_holidays(date.fromisoformat(start), scheduling.market_calendar),
    )


trading_day_partitions = _build()
