import dagster as dg

from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.reconciliation.jobs import portfolio_reconciliation_job

portfolio_reconciliation_schedule = dg.ScheduleDefinition(
    name="portfolio_reconciliation_schedule",
    job=portfolio_reconciliation_job,
    cron_schedule="0 18 * * 5",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly portfolio reconciliation, Fridays 18:00 New York time, after the close.",
)
