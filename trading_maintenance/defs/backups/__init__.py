"""Backups: the backup_archive asset, its weekly schedule, and the restore drill (asset check + sensor)."""

import dagster as dg

from trading_maintenance.defs.backups.assets import backup_archive
from trading_maintenance.defs.backups.checks import restore_drill
from trading_maintenance.defs.backups.jobs import backup_archive_job, backup_verification_job
from trading_maintenance.defs.backups.schedules import backup_archive_schedule
from trading_maintenance.defs.backups.sensors import backup_verification_sensor

defs = dg.Definitions(
    assets=[backup_archive],
    asset_checks=[restore_drill],
    jobs=[backup_archive_job, backup_verification_job],
    schedules=[backup_archive_schedule],
    sensors=[backup_verification_sensor],
)
