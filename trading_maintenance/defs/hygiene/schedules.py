import dagster as dg

from trading_maintenance.defs.common import TIMEZONE, maintenance_window_schedule
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
# The cleanup chain follows the maintenance window of settings (daily_maintenance_hour 2 and
# weekly_maintenance_day sunday by default: 02:00, 02:30, 03:00 daily; Sunday 02:00 and 03:30).
data_cleanup_schedule = maintenance_window_schedule(
    "data_cleanup_schedule", data_cleanup_job, "apply file retention, remove duplicates, compress old kept files."
)
log_rotation_schedule = maintenance_window_schedule(
    "log_rotation_schedule", log_rotation_job, "rotate logs over the size limit, compress and prune rotated logs.", offset_minutes=30
)
cache_cleanup_schedule = maintenance_window_schedule(
    "cache_cleanup_schedule", cache_cleanup_job, "Redis cache TTLs, idle and orphaned keys, memory purge when fragmented.", offset_minutes=60
)
performance_optimization_schedule = maintenance_window_schedule(
    "performance_optimization_schedule", performance_optimization_job,
    "measure Redis, database, disk and network and write recommendations.", weekly=True,
)
resource_optimization_schedule = maintenance_window_schedule(
    "resource_optimization_schedule", resource_optimization_job,
    "after the weekly measurements: memory purge, list caps, gzip of old rotated logs and exports.", offset_minutes=90, weekly=True,
)

HYGIENE_SCHEDULES = [
    api_rate_limit_schedule,
    data_cleanup_schedule,
    log_rotation_schedule,
    cache_cleanup_schedule,
    performance_optimization_schedule,
    resource_optimization_schedule,
]
