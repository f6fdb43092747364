
import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.health.ops import check_system_health


@dg.job(
    description="System health check: a 0-100 score from host, Redis, database, services and market-data freshness.",
    tags=job_tags("system_health_check"),
)
def system_health_check_job():
    check_system_health()
