import dagster as dg

from trading_maintenance.core.market_data.consolidate import months_to_consolidate
from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.market_data.jobs import market_data_monthly_job
from trading_maintenance.defs.market_data.partitions import market_data_monthly_partitions
from trading_maintenance.settings import get_settings


@dg.schedule(
    job=market_data_monthly_job,
    cron_schedule="0 23 * * 6",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Saturday 23:00 ET: consolidate the latest complete NYSE month (final once its last trading day has closed) "
        "and the current month so far."
    ),
)
def market_data_monthly_schedule(context: dg.ScheduleEvaluationContext):
    calendar_name = get_settings().maintenance.scheduling.market_calendar
    moment = context.scheduled_execution_time
    keys = set(market_data_monthly_partitions.get_partition_keys(current_time=moment))
    requests = []
    for month, kind in months_to_consolidate(moment, calendar_name):
        key = f"{month}-01"
        if key not in keys:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"market_data_monthly:{key}:{kind}:{moment.date().isoformat()}",
                partition_key=key,
                tags={"maintenance/month_state": kind},
            )
        )
    if not requests:
        return dg.SkipReason(f"no market-data month to consolidate at {moment.isoformat()} (before the partitions start)")
    return requests
