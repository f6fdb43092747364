"""Daily partitions on calendar days of the journal's time zone: every fill belongs to exactly one.

Fills happen on any day (overnight sessions from Sunday evening, crypto around the clock), so the
export cannot follow the exchange's trading days: a Sunday fill would be in no file.
"""

import dagster as dg

from trading_maintenance.defs.task import load_time_settings, partitions_start


def _build() -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=partitions_start(),
        timezone=load_time_settings().trading.journal_timezone,
        fmt="%Y-%m-%d",
        end_offset=1,  # today is a partition as soon as it starts (the export runs at 18:00)
    )


journal_day_partitions = _build()
