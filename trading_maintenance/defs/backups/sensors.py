import dagster as dg

from trading_maintenance.defs.backups.assets import BACKUP_ASSET
from trading_maintenance.defs.backups.checks import backup_verification_job


@dg.asset_sensor(
    asset_key=BACKUP_ASSET,
    job=backup_verification_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the restore drill once after each real (non dry-run) backup_archive materialization.",
)
def backup_verification_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    metadata = materialization.metadata if materialization else {}
    dry_run = metadata.get("dry_run")
    if dry_run is not None and dry_run.value:
        return dg.SkipReason(f"backup_archive materialization of run {asset_event.run_id} was a dry run: nothing to drill")
    backup_id = metadata.get("backup_id")
    return dg.RunRequest(
        run_key=f"restore-drill-{asset_event.run_id}",
        tags={"maintenance/trigger": "backup_verification_sensor", "maintenance/backup_id": str(backup_id.value if backup_id else "")},
    )
