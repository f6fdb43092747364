
import dagster as dg

from trading_maintenance.core.health.cadence import health_check_due
from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.health.jobs import system_health_check_job
from trading_maintenance.settings import get_settings


@dg.schedule(
    job=system_health_check_job,
    cron_schedule=f"*/{get_settings().maintenance.scheduling.market_hours_check_minutes} * * * *",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Health check every 5 minutes during NYSE regular hours (holidays and early closes respected), hourly otherwise.",
)
def system_health_check_schedule(context: dg.ScheduleEvaluationContext):
    scheduling = get_settings().maintenance.scheduling
    due, reason = health_check_due(
        context.scheduled_execution_time,
        scheduling.market_hours_check_minutes,
        scheduling.off_hours_check_minutes,
        scheduling.market_calendar,
        scheduling.timezone,
    )
    if not due:
        return dg.SkipReason(reason)
    return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat(), tags={"maintenance/cadence": reason})
