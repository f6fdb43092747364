import dagster as dg

from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.database.jobs import database_maintenance_job

database_maintenance_schedule = dg.ScheduleDefinition(
    name="database_maintenance_schedule",
    job=database_maintenance_job,
    cron_schedule="0 1 * * 0",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly database maintenance, Sundays 01:00 New York time (markets closed; the op refuses to run while NYSE is open).",
)
