"""Daily partitions on calendar days of the journal's time zone: every fill belongs to exactly one.

Fills happen on any day (overnight sessions from Sunday evening, crypto around the clock), so the
export cannot follow the exchange's trading days: a Sunday fill would be in no file.
"""

import dagster as dg

from trading_maintenance.settings import get_settings


def _build() -> dg.DailyPartitionsDefinition:
    settings = get_settings()
    return dg.DailyPartitionsDefinition(
        start_date=settings.maintenance.scheduling.partitions_start_date,
        timezone=settings.trading.journal_timezone,
        fmt="%Y-%m-%d",
        end_offset=1,  # today is a partition as soon as it starts (the export runs at 18:00)
    )


journal_day_partitions = _build()
