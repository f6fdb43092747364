"""Performance: measure and recommend: its ops, job and schedule."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.hygiene import cache as cache_core
from trading_maintenance.core.hygiene import performance as perf_core
from trading_maintenance.core.hygiene.failures import part_failed
from trading_maintenance.defs.common import markdown_table
from trading_maintenance.defs.hygiene.common import HygieneConfig, finish_task
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
    SystemProbeResource,
    TradingDatabaseResource,
)

PERFORMANCE_OPTIMIZATION = MaintenanceTask(
    "performance_optimization",
    "Performance: measure Redis memory, largest keys, database sessions, disk, inodes and network; recommend.",
)


def run_performance(
    context,
    config: HygieneConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
) -> dict:
    cfg = settings.get()
    hygiene = cfg.hygiene
    client = redis.get_client()
    failures: list[str] = []
    report: dict = {}
    try:
        top, sampled = perf_core.largest_keys(client, hygiene.largest_keys_sample, 10, hygiene.scan_count)
        no_ttl = perf_core.cache_keys_without_ttl(client, hygiene.cache_namespaces, hygiene.scan_count)
        report["redis"] = {"memory": cache_core.memory_info(client), "largest_keys": top, "keys_sampled": sampled, "cache_keys_without_ttl": no_ttl}
    except Exception as exc:  # noqa: BLE001
        failures.append(part_failed("redis measurement", exc))
        report["redis"] = {}
    try:
        report["database"] = perf_core.database_sessions(
            trading_db.get_engine(), hygiene.idle_in_transaction_minutes * 60, hygiene.terminate_idle_in_transaction, config.dry_run
        )
    except Exception as exc:  # noqa: BLE001
        failures.append(part_failed("database measurement", exc))
        report["database"] = {}
    sample = system_probe.sample()
    folders = perf_core.folder_sizes(cfg.data_dir, depth=2)
    report["disk"] = {
        "disk_percent": sample.disk_percent,
        "disk_free_bytes": sample.disk_free_bytes,
        "data_bytes": sum(f["bytes"] for f in folders if "/" not in f["folder"]),
        "largest_folders": folders[:15],
        "inodes": perf_core.inode_usage(sample.disk_path),
    }
    report["network"] = perf_core.network_connections()
    recs = perf_core.recommendations(report, hygiene.memory_purge_fragmentation, hygiene.idle_in_transaction_minutes)
    report_path = ""
    if not config.dry_run:
        stamp = datetime.now(ZoneInfo(cfg.maintenance.scheduling.timezone)).strftime("%Y-%m-%d")
        path = cfg.reports_dir / "maintenance" / f"performance_{stamp}.md"
        body = [f"# Performance report {stamp}", "", "## Recommendations", *(f"- {r}" for r in recs or ["no action needed"]), ""]
        body += ["## Largest Redis keys", markdown_table(report["redis"].get("largest_keys", [])), "", "## Largest folders", markdown_table(folders[:15]), ""]
        atomic_write_text(path, "\n".join(body) + "\n")
        report_path = str(path)
    memory = report["redis"].get("memory", {})
    idle = report["database"].get("idle_in_transaction", [])
    terminated = sum(1 for s in idle if s.get("terminated"))
    metadata = {
        "dry_run": config.dry_run,
        "redis_used_memory": memory.get("used_memory", 0),
        "redis_fragmentation": float(memory.get("mem_fragmentation_ratio", 0)),
        "redis_keys_sampled": report["redis"].get("keys_sampled", 0),
        "cache_keys_without_ttl": report["redis"].get("cache_keys_without_ttl", 0),
        "db_idle_in_transaction": len(idle),
        "db_sessions_terminated": terminated,
        "disk_percent": sample.disk_percent,
        "inode_percent": float(report["disk"]["inodes"].get("inode_percent", 0) or 0),
        "network_connections": report["network"].get("total", 0),
        "recommendations": dg.MetadataValue.md("\n".join(f"- {r}" for r in recs) or "no action needed"),
        "largest_keys": dg.MetadataValue.md(markdown_table(report["redis"].get("largest_keys", []))),
        "largest_folders": dg.MetadataValue.md(markdown_table(folders[:15])),
        "connections_by_state": dg.MetadataValue.json(report["network"].get("by_state", {})),
        "report_path": report_path or "(dry run: no report written)",
    }
    context.add_output_metadata(metadata)
    result = {"dry_run": config.dry_run, "recommendations": recs, "report_path": report_path, "db_sessions_terminated": terminated, **report}
    return finish_task(context, client, "performance_optimization", result, failures)


@dg.op(
    pool=PERFORMANCE_OPTIMIZATION.pool,
    description="Measure Redis memory and largest keys, database sessions, disk and inodes, network connections; write recommendations.",
)
def measure_performance(
    context: dg.OpExecutionContext,
    config: HygieneConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
) -> dict:
    return run_performance(context, config, settings, redis, trading_db, system_probe)


@PERFORMANCE_OPTIMIZATION.op_job("performance_optimization_job")
def performance_optimization_job():
    measure_performance()


performance_optimization_schedule = PERFORMANCE_OPTIMIZATION.schedule(performance_optimization_job)
