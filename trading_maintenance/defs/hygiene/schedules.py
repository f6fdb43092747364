import dagster as dg

from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.hygiene.jobs import (
    api_rate_limit_job,
    cache_cleanup_job,
    data_cleanup_job,
    log_rotation_job,
    performance_optimization_job,
    resource_optimization_job,
)

_RUNNING = dg.DefaultScheduleStatus.RUNNING

api_rate_limit_schedule = dg.ScheduleDefinition(
    name="api_rate_limit_schedule",
    job=api_rate_limit_job,
    cron_schedule="1 0 * * *",
    execution_timezone=TIMEZONE,
    default_status=_RUNNING,
    description="00:01 ET daily: archive yesterday's API call counts and reset the daily counters.",
)
data_cleanup_schedule = dg.ScheduleDefinition(
    name="data_cleanup_schedule",
    job=data_cleanup_job,
    cron_schedule="0 2 * * *",
    execution_timezone=TIMEZONE,
    default_status=_RUNNING,
    description="02:00 ET daily: apply file retention, remove duplicates, compress old kept files.",
)
log_rotation_schedule = dg.ScheduleDefinition(
    name="log_rotation_schedule",
    job=log_rotation_job,
    cron_schedule="30 2 * * *",
    execution_timezone=TIMEZONE,
    default_status=_RUNNING,
    description="02:30 ET daily: rotate logs over the size limit, compress and prune rotated logs.",
)
cache_cleanup_schedule = dg.ScheduleDefinition(
    name="cache_cleanup_schedule",
    job=cache_cleanup_job,
    cron_schedule="0 3 * * *",
    execution_timezone=TIMEZONE,
    default_status=_RUNNING,
    description="03:00 ET daily: Redis cache TTLs, idle and orphaned keys, memory purge when fragmented.",
)
performance_optimization_schedule = dg.ScheduleDefinition(
    name="performance_optimization_schedule",
    job=performance_optimization_job,
    cron_schedule="0 2 * * 0",
    execution_timezone=TIMEZONE,
    default_status=_RUNNING,
    description="Sunday 02:00 ET: measure Redis, database, disk and network and write recommendations.",
)
resource_optimization_schedule = dg.ScheduleDefinition(
    name="resource_optimization_schedule",
    job=resource_optimization_job,
    cron_schedule="30 3 * * 0",
    execution_timezone=TIMEZONE,
    default_status=_RUNNING,
    description="Sunday 03:30 ET (after the weekly measurements): memory purge, list caps, gzip of old rotated logs and exports.",
)

HYGIENE_SCHEDULES = [
    api_rate_limit_schedule,
    data_cleanup_schedule,
    log_rotation_schedule,
    cache_cleanup_schedule,
    performance_optimization_schedule,
    resource_optimization_schedule,
]
