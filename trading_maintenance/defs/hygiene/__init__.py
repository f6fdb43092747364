"""Data hygiene: data cleanup, log rotation, Redis cache cleanup, API rate limits, performance."""

import dagster as dg

from trading_maintenance.defs.hygiene.jobs import (
    api_rate_limit_job,
    cache_cleanup_job,
    data_cleanup_job,
    log_rotation_job,
    performance_optimization_job,
    resource_optimization_job,
)
from trading_maintenance.defs.hygiene.schedules import HYGIENE_SCHEDULES

HYGIENE_JOBS = [
    data_cleanup_job,
    log_rotation_job,
    cache_cleanup_job,
    api_rate_limit_job,
    performance_optimization_job,
    resource_optimization_job,
]

defs = dg.Definitions(jobs=HYGIENE_JOBS, schedules=HYGIENE_SCHEDULES)
