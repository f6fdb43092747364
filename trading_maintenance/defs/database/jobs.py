import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.database.ops import maintain_trading_database


@dg.job(
    description="Database maintenance: measure, VACUUM/ANALYZE, REINDEX bloated indexes, purge records older than a year after a verified parquet archive.",
    tags=job_tags("database_maintenance"),
)
def database_maintenance_job():
    maintain_trading_database()
