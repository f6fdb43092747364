import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.hygiene.ops import (
    clean_data_files,
    clean_redis_caches,
    measure_performance,
    optimize_resources,
    reset_api_rate_limits,
    rotate_logs,
)


@dg.job(
    description="Data cleanup: retention per category (market data only once archived), duplicate files, gzip of old kept files, verified.",
    tags=job_tags("data_cleanup"),
)
def data_cleanup_job():
    clean_data_files()


@dg.job(description="Log rotation by rename (.1 ... .5 per log), gzip of old rotated logs; no line lost or duplicated.", tags=job_tags("log_rotation"))
def log_rotation_job():
    rotate_logs()


@dg.job(description="Redis cache cleanup: TTLs for cache keys, idle and orphaned keys deleted, memory before/after, MEMORY PURGE.", tags=job_tags("cache_cleanup"))
def cache_cleanup_job():
    clean_redis_caches()


@dg.job(description="Archive yesterday's API rate-limit counts and reset the counters once per day; utilisation analysis.", tags=job_tags("api_rate_limit_reset"))
def api_rate_limit_job():
    reset_api_rate_limits()


@dg.job(description="Performance: measure Redis memory, largest keys, database sessions, disk, inodes and network; recommend.", tags=job_tags("performance_optimization"))
def performance_optimization_job():
    measure_performance()


@dg.job(description="Resource optimization (safe actions): MEMORY PURGE when fragmented, trim maintenance lists, gzip old rotated logs and exports.", tags=job_tags("resource_optimization"))
def resource_optimization_job():
    optimize_resources()
