import dagster as dg

from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.security.jobs import security_audit_job

security_audit_schedule = dg.ScheduleDefinition(
    name="security_audit_schedule",
    job=security_audit_job,
    cron_schedule="0 4 * * 0",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly security audit, Sundays 04:00 New York time (also run on demand: `maintenance run --task security_audit`).",
)
