"""Resource optimization: safe actions only: its ops, job and schedule."""

import time

import dagster as dg

from trading_maintenance.core.hygiene import cache as cache_core
from trading_maintenance.core.hygiene import cleanup as cleanup_core
from trading_maintenance.core.hygiene import performance as perf_core
from trading_maintenance.core.hygiene.compression import gzip_file
from trading_maintenance.core.hygiene.file_names import EXPORT_LAYOUTS, is_live_log, is_newest_rotated_log
from trading_maintenance.core.hygiene.open_files import open_file_ids
from trading_maintenance.defs.common import markdown_table
from trading_maintenance.defs.hygiene.cache_cleanup import maybe_purge
from trading_maintenance.defs.hygiene.common import HygieneConfig, finish_task, relative_to_root
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
)

RESOURCE_OPTIMIZATION = MaintenanceTask(
    "resource_optimization",
    "Resource optimization (safe actions): MEMORY PURGE when fragmented, trim maintenance lists, gzip old rotated logs and exports.",
)


def compression_candidates(cfg, now: float) -> list:
    """Old rotated logs (never the newest .1) and exports past compress_after_days, as plans."""
    tz = cfg.maintenance.scheduling.timezone
    forever = 10**6
    cats = [
        cleanup_core.Category("logs", str(cfg.logs_dir), forever, compress=True, exclude=is_live_log, compress_exclude=is_newest_rotated_log),
        cleanup_core.Category("exports", str(cfg.exports_dir), forever, EXPORT_LAYOUTS, compress=True),
    ]
    return cleanup_core.plan_cleanup(cats, cfg.data_dir, now, tz, cfg.hygiene.compress_after_days, None)


def run_resource_optimization(context, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    cfg = settings.get()
    hygiene = cfg.hygiene
    client = redis.get_client()
    failures: list[str] = []
    before = cache_core.memory_info(client)
    memory_action = maybe_purge(client, hygiene, config.dry_run)
    trims, trim_skipped = perf_core.plan_list_trims(client, hygiene.maintenance_list_caps, hygiene.maintenance_list_default_cap, hygiene.scan_count)
    if not config.dry_run:
        perf_core.apply_list_trims(client, trims)
        failures += [f"{t.key}: {t.status}" for t in trims if t.status.startswith("error")]
    gz_rows, gz_done, gz_saved = [], 0, 0
    if cfg.maintenance.performance.compression_enabled:
        open_ids = None if config.dry_run else open_file_ids()
        for plan in compression_candidates(cfg, time.time()):
            for entry in plan.compress:
                if config.dry_run:
                    gz_rows.append({"path": relative_to_root(entry.path, cfg.data_dir), "status": "would gzip", "bytes": entry.size})
                    continue
                res = gzip_file(entry.path, entry.mtime, open_ids)
                gz_rows.append({"path": relative_to_root(entry.path, cfg.data_dir), "status": "gzipped" if res.ok else res.reason, "bytes": entry.size})
                if res.ok:
                    gz_done += 1
                    gz_saved += res.bytes_before - res.bytes_after
                elif not res.reason.startswith(("held open", "gone before")):
                    failures.append(f"gzip {relative_to_root(entry.path, cfg.data_dir)}: {res.reason}")
    after = cache_core.memory_info(client)
    summary = {
        "used_memory_before": before["used_memory"],
        "used_memory_after": after["used_memory"],
        "fragmentation_before": before["mem_fragmentation_ratio"],
        "fragmentation_after": after["mem_fragmentation_ratio"],
        **memory_action,
        "lists_trimmed": sum(1 for t in trims if t.status == "trimmed"),
        "list_entries_removed": sum(t.removed for t in trims if t.status == "trimmed"),
        "planned_list_trims": len(trims),
        "planned_list_entries": sum(t.length - t.cap for t in trims),
        "files_gzipped": gz_done,
        "planned_gzips": len(gz_rows),
        "bytes_saved_by_gzip": gz_saved,
    }
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            **{k: v for k, v in summary.items() if not isinstance(v, str)},
            "purge_reason": summary["purge_reason"],
            "list_trims": dg.MetadataValue.md(markdown_table([t.as_dict() for t in trims])),
            "gzip": dg.MetadataValue.md(markdown_table(gz_rows, limit=200)),
        }
    )
    result = {"dry_run": config.dry_run, **summary, "list_trims": [t.as_dict() for t in trims], "list_skipped": trim_skipped, "gzip": gz_rows[:500]}
    return finish_task(context, client, "resource_optimization", result, failures)


@dg.op(
    pool=RESOURCE_OPTIMIZATION.pool,
    description="Safe actions: MEMORY PURGE when fragmentation is high, trim maintenance:* lists to their caps, gzip old rotated logs and exports.",
)
def optimize_resources(context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_resource_optimization(context, config, settings, redis)


@RESOURCE_OPTIMIZATION.op_job("resource_optimization_job")
def resource_optimization_job():
    optimize_resources()


resource_optimization_schedule = RESOURCE_OPTIMIZATION.schedule(resource_optimization_job)
