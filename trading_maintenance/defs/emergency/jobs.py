import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.emergency.ops import (
    clean_expired_temp_files,
    emergency_cache_cleanup,
    recheck_system_health,
    report_emergency_maintenance,
)


@dg.job(
    description="Emergency maintenance, launched when the health score falls below the threshold: re-check health, free temp space, clean Redis caches, alert.",
    tags=job_tags("emergency_maintenance"),
)
def emergency_maintenance_job():
    health_before = recheck_system_health()
    temp_cleanup = clean_expired_temp_files(health_before)
    cache_cleanup = emergency_cache_cleanup(health_before)  # cache TTLs, idle/orphaned keys, memory purge
    report_emergency_maintenance(health_before, temp_cleanup, cache_cleanup)
