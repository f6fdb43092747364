import dagster as dg

from trading_maintenance.defs.backups.jobs import backup_archive_job
from trading_maintenance.defs.common import TIMEZONE

backup_archive_schedule = dg.ScheduleDefinition(
    name="backup_archive_schedule",
    job=backup_archive_job,
    cron_schedule="30 1 * * 0",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly backup, Sunday 01:30 New York time (markets closed); the restore drill follows it.",
)
