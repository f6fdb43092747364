"""Emergency maintenance: re-check health, free what is safe to free, say what happened."""


import time

import dagster as dg

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.hygiene.retention import apply_plan, plan_expired, verify_plan
from trading_maintenance.defs.common import conclude, markdown_table
from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET, SYSTEM_HEALTH_CHECK, HealthCheckConfig, run_health_check
from trading_maintenance.defs.hygiene.cache_cleanup import run_cache_cleanup
from trading_maintenance.defs.hygiene.common import HygieneConfig
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    AlertsResource,
    MaintenanceSettingsResource,
    PlatformServicesResource,
    RedisResource,
    SystemProbeResource,
    TradingDatabaseResource,
)

EMERGENCY_MAINTENANCE = MaintenanceTask(
    "emergency_maintenance",
    "Emergency maintenance, launched when the health score falls below the threshold: re-check health, free temp space, clean Redis caches, alert.",
    in_run_all=False,
)
TASK = EMERGENCY_MAINTENANCE.name


class TempCleanupConfig(dg.Config):
    dry_run: bool = False


@dg.op(pool=EMERGENCY_MAINTENANCE.pool, description="Re-measure health at the start of emergency maintenance.")
def recheck_system_health(
    context: dg.OpExecutionContext,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
    platform_services: PlatformServicesResource,
    alerts: AlertsResource,
) -> dict:
    result, metadata = run_health_check(
        context, HealthCheckConfig(send_alerts=False), settings, redis, trading_db, system_probe, platform_services, alerts,
        SYSTEM_HEALTH_CHECK.name,
    )
    # The re-check is a health reading like any other: the emergency sensor and the trends read it.
    context.log_event(dg.AssetMaterialization(
        asset_key=SYSTEM_HEALTH_ASSET, description=f"health {result['score']} ({result['health_status']})", metadata=metadata
    ))
    return result


def clean_temp_files(context: dg.OpExecutionContext, config: TempCleanupConfig, settings: MaintenanceSettingsResource) -> dict:
    cfg = settings.get()
    retention_days = cfg.maintenance.data_retention.temp_files
    plan = plan_expired(cfg.temp_dir, retention_days * 86400, time.time())
    rows = [{"path": e.path, "bytes": e.size, "age_days": round(e.age_seconds / 86400, 2)} for e in plan.delete]
    summary = {
        "dry_run": config.dry_run,
        "retention_days": retention_days,
        "planned_files": len(plan.delete),
        "planned_bytes": plan.bytes_to_free,
        "kept_files": len(plan.keep),
        "skipped": [f"{p}: {r}" for p, r in plan.skipped],
    }
    if config.dry_run:
        context.log.info(f"dry run: would delete {len(plan.delete)} temp files ({plan.bytes_to_free} bytes)")
        summary.update(deleted_files=0, bytes_freed=0, failed=[], problems=[])
    else:
        outcome = apply_plan(plan)
        verify_plan(plan, outcome)
        summary.update(
            deleted_files=len(outcome.deleted),
            bytes_freed=outcome.bytes_freed,
            failed=[f"{p}: {r}" for p, r in outcome.failed],
            problems=outcome.problems,
        )
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            "temp_files_planned": summary["planned_files"],
            "temp_files_deleted": summary["deleted_files"],
            "bytes_freed": summary["bytes_freed"],
            "files_kept": summary["kept_files"],
            "plan": dg.MetadataValue.md(markdown_table(rows)),
        }
    )
    return summary


@dg.op(pool=EMERGENCY_MAINTENANCE.pool, description="Delete temp files past the temp retention (dry_run lists them instead).")
def clean_expired_temp_files(context: dg.OpExecutionContext, config: TempCleanupConfig, settings: MaintenanceSettingsResource, health_before: dict) -> dict:
    return clean_temp_files(context, config, settings)


@dg.op(
    pool=EMERGENCY_MAINTENANCE.pool,
    description="Cache cleanup for emergencies: a failure (Redis down, say) is recorded for the report instead of stopping the run.",
)
def emergency_cache_cleanup(
    context: dg.OpExecutionContext,
    config: TempCleanupConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    health_before: dict,
) -> dict:
    try:
        summary = run_cache_cleanup(context, HygieneConfig(dry_run=config.dry_run), settings, redis, trading_db)
        return {"ok": True, "summary": summary}
    except Exception as exc:  # noqa: BLE001 - reported by report_emergency_maintenance, which fails the run
        detail = exc.description if isinstance(exc, dg.Failure) else f"{type(exc).__name__}: {exc}"
        context.log.error(f"cache cleanup failed during emergency maintenance: {detail}")
        return {"ok": False, "error": detail}


@dg.op(pool=EMERGENCY_MAINTENANCE.pool, description="Publish the emergency run's result and raise an alert; fail when any step failed.")
def report_emergency_maintenance(
    context: dg.OpExecutionContext,
    redis: RedisResource,
    alerts: AlertsResource,
    health_before: dict,
    temp_cleanup: dict,
    cache_cleanup: dict,
) -> dict:
    failed = bool(temp_cleanup.get("failed") or temp_cleanup.get("problems") or not cache_cleanup.get("ok"))
    result = {
        "status": "failed" if failed else "success",
        "run_id": context.run_id,
        "score": health_before.get("score"),
        "health_status": health_before.get("health_status"),
        "reasons": health_before.get("reasons", []),
        "temp_cleanup": temp_cleanup,
        "cache_cleanup": cache_cleanup,
        "dry_run": temp_cleanup.get("dry_run", False),
    }
    client = redis.get_client()
    conclude(
        context, client, TASK, result, alerts=alerts,
        alert=Alert(
            key=f"emergency:{context.run_id}",
            severity="critical",
            title="Emergency maintenance ran",
            message=f"health score {health_before.get('score')} ({health_before.get('health_status')}); "
            f"freed {temp_cleanup.get('bytes_freed', 0)} bytes of temp files",
            details={"reasons": "; ".join(health_before.get("reasons", [])) or "none", "run_id": context.run_id},
        ),
        failure="emergency maintenance partly failed" if failed else "",
        failure_metadata={
            "failed": "\n".join(temp_cleanup.get("failed", [])),
            "problems": "\n".join(temp_cleanup.get("problems", [])),
            "cache_cleanup_error": cache_cleanup.get("error", ""),
        },
    )
    return result


@EMERGENCY_MAINTENANCE.op_job("emergency_maintenance_job")
def emergency_maintenance_job():
    health_before = recheck_system_health()
    temp_cleanup = clean_expired_temp_files(health_before)
    cache_cleanup = emergency_cache_cleanup(health_before)  # cache TTLs, idle/orphaned keys, memory purge
    report_emergency_maintenance(health_before, temp_cleanup, cache_cleanup)
