from datetime import date
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.market_hours import is_trading_day
from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.tradenote.jobs import tradenote_export_job


@dg.schedule(
    job=tradenote_export_job,
    cron_schedule="0 18 * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="TradeNote export of the day's fills at 18:00 New York time on NYSE trading days (holidays skipped).",
)
def tradenote_export_schedule(context: dg.ScheduleEvaluationContext):
    day: date = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE)).date()
    if not is_trading_day(day):
        return dg.SkipReason(f"{day.isoformat()} is not an NYSE trading day: nothing to export")
    key = day.isoformat()
    return dg.RunRequest(run_key=f"tradenote_export:{key}", partition_key=key)
