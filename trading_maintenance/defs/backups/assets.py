"""backup_archive: configuration, Redis, the trading database and trading data in one verified archive."""

import time
from datetime import datetime, timedelta, timezone

import dagster as dg

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.backups.archive import plan_backup_retention
from trading_maintenance.core.backups.archive_reader import identify_local_backups
from trading_maintenance.core.backups.orchestrate import after_backup
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.run import collect_trading_files, create_backup
from trading_maintenance.core.backups.temporaries import remove_dead_temporaries
from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.defs.common import conclude, markdown_table, publish_result, record_dry_run_plan
from trading_maintenance.defs.market_data.assets import MARKET_DATA_MONTHLY
from trading_maintenance.defs.platform import PLATFORM_CONFIGURATION, REDIS_STATE, TRADING_DATABASE
from trading_maintenance.defs.task import OWNERS, MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource, TradingDatabaseResource
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance.settings import SECRET_KEYS, masked_dump

BACKUP_ASSET = dg.AssetKey("backup_archive")
BACKUP = MaintenanceTask(
    "backup",
    "Back up configuration, Redis, the trading database and trading data; verify; upload; apply retention.",
)
TASK = BACKUP.name


class BackupConfig(dg.Config):
    dry_run: bool = False
    upload: bool = True  # when backup.remote_enabled
    apply_retention: bool = True


def _secrets(cfg) -> list[str]:
    values = [cfg.redis_url(), cfg.database_url()]
    if cfg.backup.encryption_key:
        values.append(cfg.backup.encryption_key.get_secret_value())
    return [v for v in values if v]


@dg.asset(
    key=BACKUP_ASSET,
    deps=[PLATFORM_CONFIGURATION, REDIS_STATE, *TRADING_DATABASE, MARKET_DATA_MONTHLY],
    group_name="backups",
    kinds={"redis", "postgres", "s3"},
    owners=OWNERS,
    pool=BACKUP.pool,
    # weekly: a week and a day without a backup means the schedule or the daemon has stopped
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8)),
    output_required=False,  # a dry run records its plan, not a backup
    description="Weekly (and on-demand) archive of configuration (secrets masked), every Redis key with its TTL, "
    "the trading database (pg_dump or logical export; SQLite online backup) and recent trading data, with a "
    "SHA-256 manifest; optionally encrypted (AES-256-GCM) and copied to S3; verified before retention.",
)
def backup_archive(
    context: dg.AssetExecutionContext,
    config: BackupConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    object_store: ObjectStoreResource,
    alerts: AlertsResource,
):
    started = time.monotonic()
    cfg = settings.get()
    bcfg = cfg.backup
    now = datetime.now(timezone.utc)
    secret = bcfg.encryption_key.get_secret_value() if bcfg.encryption_key else None
    client = redis.get_client()
    engine = trading_db.get_engine()
    parts = list(bcfg.include_parts)
    files, skipped, excluded = collect_trading_files(cfg.data_dir, bcfg.trading_data_folders, bcfg.market_data_recent_days, now)
    if "trading_data" not in parts:
        files = []
    remote = object_store if (bcfg.remote_enabled and object_store.bucket and config.upload) else None
    local_days = cfg.maintenance.data_retention.backup_files
    base = {"run_id": context.run_id, "dry_run": config.dry_run, "format": bcfg.format, "encrypted": bool(secret)}

    if config.dry_run:
        counts = bdb.target_row_counts(engine) if "database" in parts else {}
        listing = identify_local_backups(cfg.backups_dir, secret)
        local_plan = plan_backup_retention(listing.refs, local_days, now)
        planned = {
            "parts": parts,
            "config_file": str(cfg.config_path or ""),
            "redis_keys": client.dbsize() if "redis" in parts else 0,
            "database_rows": counts,
            "trading_files": len(files),
            "trading_bytes": sum(f.size for f in files),
            "old_daily_files_left_to_monthly_archives": excluded,
            "destination": str(cfg.backups_dir),
            "remote": remote.describe() if remote else "disabled",
            "local_retention_would_delete_after_success": [r.name for r in local_plan.delete],
            "archive_problems": listing.problems,
            "skipped": skipped,
        }
        publish_result(client, TASK, {"status": "success", **base, **planned}, context.log)
        record_dry_run_plan(
            context,
            BACKUP_ASSET,
            {"back_up_parts": len(parts), "back_up_trading_files": len(files), "back_up_redis_keys": planned["redis_keys"],
             "back_up_database_rows": sum(counts.values()), "delete_local_backups": len(local_plan.delete)},
            [f"part {part}" for part in parts] + [f"delete {name}" for name in planned["local_retention_would_delete_after_success"]],
            where=f"maintenance:result:{TASK} in Redis",
        )
        return

    removed_partials = remove_dead_temporaries(cfg.backups_dir)
    for path in removed_partials:
        context.log.info(f"removed {path}: left by a backup that is no longer running")
    problems: list[str] = []
    try:
        outcome = create_backup(
            dest_dir=cfg.backups_dir, fmt=bcfg.format, secret=secret, parts=parts, config_path=cfg.config_path,
            effective_settings=masked_dump(cfg), secret_keys=SECRET_KEYS, redis_client=client if "redis" in parts else None,
            engine=engine if "database" in parts else None, db_url=trading_db.url, data_dir=cfg.data_dir,
            trading_files=files, database_method=bcfg.database_method, now=now, work_root=cfg.backups_dir,
            repository=Repository.open_or_create(cfg.backups_dir, secret),
        )
    except Exception as exc:  # noqa: BLE001 - reported, alerted, and the run fails
        message = mask_text(f"{type(exc).__name__}: {exc}", _secrets(cfg))
        conclude(context, client, TASK, {"status": "failed", **base, "error": message}, alerts=alerts,
                 alert=Alert(key="backup:failed", severity="critical", title="Backup failed", message=message,
                             details={"run_id": context.run_id}),
                 failure=f"backup failed: {message}", failure_metadata={"error": message})

    summary = outcome.summary()
    after = after_backup(outcome.archive, secret, cfg.backups_dir, local_days, remote, bcfg.remote_retention_days,
                         config.apply_retention, now, _secrets(cfg))
    for problem in after.archive_problems:
        context.log.warning(problem)
    problems += after.problems

    duration = time.monotonic() - started
    result = {
        "status": "failed" if problems or not after.verified else "success",
        **base,
        **summary,
        **after.remote_info,
        "verified": after.verified,
        "duration_seconds": round(duration, 3),
        "local_deleted": after.local_deleted,
        "remote_deleted": after.remote_deleted,
        "removed_partials": removed_partials,
        "archive_problems": after.archive_problems,
        "skipped": skipped,
        "problems": problems,
    }
    incomplete = result["status"] == "failed"
    conclude(context, client, TASK, result, alerts=alerts,
             alert=Alert(key="backup:failed", severity="critical", title="Backup incomplete",
                         message="; ".join(problems)[:1000] or "verification failed", details={"run_id": context.run_id})
             if incomplete else None,
             failure="backup incomplete: " + ("; ".join(problems)[:2000] or "verification failed") if incomplete else "",
             failure_metadata={"backup_id": outcome.archive.backup_id, "problems": "\n".join(problems)})
    members = [{"member": m.name, "bytes": m.size, "sha256": m.sha256[:16]} for m in outcome.archive.members]
    yield dg.MaterializeResult(
        metadata={
            "dry_run": False,
            "backup_id": outcome.archive.backup_id,
            "path": dg.MetadataValue.path(outcome.archive.path),
            "archive_bytes": outcome.archive.size,
            "uncompressed_bytes": outcome.archive.uncompressed_bytes,
            "compression_ratio": outcome.archive.compression_ratio,
            "duration_seconds": round(duration, 3),
            "config_bytes": outcome.part_bytes.get("config", 0),
            "redis_bytes": outcome.part_bytes.get("redis", 0),
            "database_bytes": outcome.part_bytes.get("database", 0),
            "trading_data_bytes": outcome.part_bytes.get("trading_data", 0),
            "redis_keys": summary["redis_keys"],
            "database_method": str(summary["database_method"]),
            "database_rows": sum(summary["database_tables"].values()),
            "trading_files": outcome.files,
            "encrypted": bool(secret),
            "format": bcfg.format,
            "archive_sha256": outcome.archive.sha256,
            "remote": str(after.remote_info["remote"]),
            "local_deleted": len(after.local_deleted),
            "remote_deleted": len(after.remote_deleted),
            "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in outcome.warnings + skipped + after.archive_problems) or "_none_"),
            "members": dg.MetadataValue.md(markdown_table(members, limit=30)),
        }
    )


backup_archive_job = BACKUP.asset_job("backup_archive_job", selection=dg.AssetSelection.assets(BACKUP_ASSET).without_checks())
backup_archive_schedule = BACKUP.schedule(backup_archive_job)
