"""Data hygiene ops: thin shells over core/{cleanup,log_rotation,cache,rate_limits,performance}.

Each op reads settings and resources, plans, applies unless dry_run, verifies, records metadata,
publishes `maintenance:result:{task}` and fails the run (dg.Failure) when any part failed.
"""

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from sqlalchemy import select

from trading_maintenance.core.hygiene import cache as cache_core
from trading_maintenance.core.hygiene import cleanup as cleanup_core
from trading_maintenance.core.hygiene import log_rotation as rotation_core
from trading_maintenance.core.hygiene import performance as perf_core
from trading_maintenance.core.hygiene import rate_limits as rate_core
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.core.trading.schema import orders as orders_table
from trading_maintenance.defs.common import atomic_write_text, md_table, publish_result
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
    SystemProbeResource,
    TradingDatabaseResource,
)

MB = 1024 * 1024


class HygieneConfig(dg.Config):
    dry_run: bool = False


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


PASSIVE_ACTIONS = ("keep", "skip", "note", "left alone")


def actions_first(rows: list[dict], passive: tuple[str, ...] = PASSIVE_ACTIONS) -> list[dict]:
    """What was (or would be) done first, in order; then one counted row per kind of thing left
    alone, so a few deletions are never buried under hundreds of "keep" rows."""
    active = [row for row in rows if row["action"] not in passive]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["action"] in passive:
            groups.setdefault((row.get("category", ""), row["action"], row.get("reason", "")), []).append(row)
    summary = []
    for (category, action, reason), members in groups.items():
        first = members[0].get("path", "")
        path = first if len(members) == 1 else f"{len(members)} files, e.g. {first}"
        summary.append({**members[0], "category": category, "action": action, "path": path, "reason": reason, "files": len(members)})
    return [{**row, "files": 1} for row in active] + summary


def _finish(context, redis_client, task: str, result: dict, failures: list[str]) -> dict:
    """Publish the result; fail the run (after publishing) when any part failed."""
    failures = [mask_text(f) for f in failures]
    result = {"status": "failed" if failures else "success", "run_id": context.run_id, **result}
    if failures:
        result["failures"] = failures[:200]
    published = publish_result(redis_client, task, result, context.log)
    result["published_to_redis"] = published
    if failures:
        raise dg.Failure(
            description=f"{task}: {len(failures)} part(s) failed",
            metadata={"failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures[:50])), "failure_count": len(failures)},
        )
    return result


# --- market-data archive coverage (issue 3), optional -------------------------------------------


def archived_market_data(settings) -> tuple[set[str] | None, str]:
    """Real paths of daily market-data files a verified monthly archive covers, and where that came
    from. Without the market-data module's `archived_daily_files`, None: nothing is deleted."""
    try:
        from trading_maintenance.core import market_data as market_data_core  # noqa: PLC0415
    except ImportError:
        return None, "market-data archive module not available: no market-data file deleted"
    func = getattr(market_data_core, "archived_daily_files", None)
    if func is None:
        return None, "archived_daily_files not available: no market-data file deleted"
    try:
        # archived_daily_files(market_data_dir, archive_dir=None, months=None, verify=True) -> set[Path]:
        # files listed in a verified manifest, unchanged since, every key re-read and found in the archive
        files = func(settings.market_data_dir)
    except Exception as exc:  # noqa: BLE001 - unknown coverage means keep everything
        return None, f"archived_daily_files failed ({type(exc).__name__}): no market-data file deleted"
    return {os.path.realpath(str(p)) for p in files}, "verified monthly archives (core.market_data.archived_daily_files)"


# --- data cleanup --------------------------------------------------------------------------------


def run_data_cleanup(context, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource, now: float | None = None) -> dict:
    cfg = settings.get()
    now = time.time() if now is None else now
    tz = cfg.maintenance.scheduling.timezone
    hygiene = cfg.hygiene
    compress_after = hygiene.compress_after_days if cfg.maintenance.performance.compression_enabled else None
    archived, archive_source = archived_market_data(cfg)
    categories = cleanup_core.standard_categories(cfg)
    plans = cleanup_core.plan_cleanup(categories, cfg.data_dir, now, tz, compress_after, archived)
    root = cfg.data_dir
    failures: list[str] = []
    rows, actions = [], []
    totals = {"files_deleted": 0, "duplicates_removed": 0, "files_compressed": 0, "bytes_freed": 0, "files_held": 0, "files_kept": 0, "name_date_notes": 0}
    open_ids = cleanup_core.open_file_ids()
    for category, plan in zip(categories, plans):
        for path, reason in plan.skipped:
            actions.append({"category": plan.name, "action": "skip", "path": _rel(path, root), "reason": reason})
        for path in plan.temporaries:
            actions.append({"category": plan.name, "action": "left alone", "path": _rel(path, root), "reason": "temporary file of another task"})
        for path, note in plan.notes:
            actions.append({"category": plan.name, "action": "note", "path": _rel(path, root), "reason": note})
        if config.dry_run:
            cleanup_core.keep_files_held_open(plan, open_ids)
        row = plan.summary()
        totals["name_date_notes"] += len(plan.notes)
        if config.dry_run:
            for t in plan.stale_temporaries:
                actions.append({"category": plan.name, "action": "would remove temporary", "path": _rel(t.path, root), "reason": t.reason})
            for e in plan.delete:
                actions.append({"category": plan.name, "action": "would delete", "path": _rel(e.path, root), "reason": f"age {e.age_seconds / 86400:.2f} d"})
            for d in plan.duplicates:
                actions.append({"category": plan.name, "action": "would delete duplicate", "path": _rel(d.path, root), "reason": f"same as {_rel(d.original, root)}"})
            for e in plan.compress:
                actions.append({"category": plan.name, "action": "would gzip", "path": _rel(e.path, root), "reason": f"age {e.age_seconds / 86400:.2f} d"})
            row.update(deleted_files=0, deduplicated_files=0, compressed_files=0, bytes_freed=0, planned_bytes=plan.bytes_to_free)
        else:
            outcome = cleanup_core.apply_category(plan, open_ids)
            cleanup_core.verify_category(plan, outcome, category, cfg.data_dir, now, tz, archived)
            for t in outcome.stale_removed:
                actions.append({"category": plan.name, "action": "removed temporary", "path": _rel(t.path, root), "reason": t.reason})
            for e in outcome.deleted:
                actions.append({"category": plan.name, "action": "deleted", "path": _rel(e.path, root), "reason": f"age {e.age_seconds / 86400:.2f} d"})
            for d in outcome.deduplicated:
                actions.append({"category": plan.name, "action": "deleted duplicate", "path": _rel(d.path, root), "reason": f"same as {_rel(d.original, root)}"})
            for r in outcome.compressed:
                actions.append({"category": plan.name, "action": "gzipped" if r.ok else "not gzipped", "path": _rel(r.path, root), "reason": r.reason})
            failures += [f"{plan.name}: {_rel(p, root)}: {r}" for p, r in outcome.failed]
            failures += [f"{plan.name}: verification: {p}" for p in outcome.problems]
            row.update(outcome.summary())
            totals["files_deleted"] += len(outcome.deleted)
            totals["duplicates_removed"] += len(outcome.deduplicated)
            totals["files_compressed"] += sum(1 for r in outcome.compressed if r.ok)
            totals["bytes_freed"] += outcome.bytes_freed
        for held in plan.held:  # after applying: files found held open are added to the plan's held
            actions.append({"category": plan.name, "action": "keep", "path": _rel(held.path, root), "reason": held.reason})
        totals["files_held"] += len(plan.held)
        totals["files_kept"] += len(plan.keep)
        rows.append(row)
    actions = actions_first(actions)
    planned = {
        "planned_deletions": sum(len(p.delete) for p in plans),
        "planned_duplicates": sum(len(p.duplicates) for p in plans),
        "planned_compressions": sum(len(p.compress) for p in plans),
        "planned_bytes": sum(p.bytes_to_free for p in plans),
    }
    metadata = {
        "dry_run": config.dry_run,
        **totals,
        **planned,
        "market_data_coverage": archive_source,
        "categories": dg.MetadataValue.md(md_table(rows)),
        "actions": dg.MetadataValue.md(md_table(actions, ["category", "action", "files", "path", "reason"], limit=200)),
    }
    context.add_output_metadata(metadata)
    context.log.info(
        ("dry run: would delete " if config.dry_run else "deleted ")
        + f"{planned['planned_deletions'] if config.dry_run else totals['files_deleted']} files; market data: {archive_source}"
    )
    result = {"dry_run": config.dry_run, **totals, **planned, "market_data_coverage": archive_source, "categories": rows, "actions": actions[:500]}
    return _finish(context, redis.get_client(), "data_cleanup", result, failures)


@dg.op(description="Apply retention per category (market data only when archived), remove duplicate files, gzip old kept files, verify.")
def clean_data_files(context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_data_cleanup(context, config, settings, redis)


# --- log rotation --------------------------------------------------------------------------------

ROTATION_STATE = Path("state") / "log_rotation.json"


def run_log_rotation(context, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    cfg = settings.get()
    now = time.time()
    compress_after = cfg.hygiene.compress_after_days * 86400 if cfg.maintenance.performance.compression_enabled else None
    open_ids = cleanup_core.open_file_ids()
    plan = rotation_core.plan_rotation(
        cfg.logs_dir, cfg.maintenance.performance.max_file_size_mb * MB, cfg.hygiene.log_rotations_kept, now, compress_after, open_ids
    )
    root = cfg.data_dir
    rows = [{"action": op.action, "path": _rel(op.path, root), "target": _rel(op.target, root) if op.target else "", "bytes": op.bytes, "reason": op.reason} for op in plan.ops]
    rows += [{"action": "skip", "path": _rel(op.path, root), "target": "", "bytes": op.bytes, "reason": op.reason} for op in plan.notes + plan.blocked]
    rows = actions_first(rows)
    failures: list[str] = [f"{_rel(op.path, root)}: {op.reason}" for op in plan.blocked]
    if config.dry_run:
        summary = {"logs_rotated": 0, "files_compressed": 0, "files_deleted": 0, "bytes_freed": 0}
    else:
        outcome = rotation_core.apply_rotation(plan, open_ids)
        problems = rotation_core.verify_rotation(plan, outcome)
        failures += [f"{op.action} {_rel(op.path, root)}: {mask_text(reason)}" for op, reason in outcome.failed]
        failures += [f"verification: {p}" for p in problems]
        summary = {
            "logs_rotated": sum(1 for op in outcome.done if op.action == "rename" and op.path.endswith(".log")),
            "files_compressed": outcome.count("compress"),
            "files_deleted": outcome.count("delete"),
            "bytes_freed": outcome.bytes_freed,
        }
        if outcome.done:
            state_path = cfg.data_dir / ROTATION_STATE
            state = rotation_core.updated_state(rotation_core.load_state(state_path), outcome, datetime.now(timezone.utc).isoformat())
            atomic_write_text(state_path, json.dumps(state, indent=2, sort_keys=True))
    planned = {
        "planned_rotations": len(plan.rotated_logs),
        "planned_compressions": plan.count("compress"),
        "planned_deletions": plan.count("delete"),
    }
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            **summary,
            **planned,
            "max_file_size_mb": cfg.maintenance.performance.max_file_size_mb,
            "rotations_kept_per_log": cfg.hygiene.log_rotations_kept,
            "logs_blocked": len(plan.blocked),
            "plan": dg.MetadataValue.md(md_table(rows, ["action", "files", "path", "target", "bytes", "reason"], limit=200)),
        }
    )
    result = {"dry_run": config.dry_run, **summary, **planned, "actions": rows[:500]}
    return _finish(context, redis.get_client(), "log_rotation", result, failures)


@dg.op(description="Rotate logs over max_file_size_mb by rename (.1, .2 ... per log), gzip old rotated files, delete beyond the count.")
def rotate_logs(context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_log_rotation(context, config, settings, redis)


# --- cache cleanup -------------------------------------------------------------------------------


def order_status_lookup(engine):
    def lookup(client_order_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with engine.connect() as conn:
            for start in range(0, len(client_order_ids), 500):
                chunk = client_order_ids[start : start + 500]
                stmt = select(orders_table.c.client_order_id, orders_table.c.status).where(orders_table.c.client_order_id.in_(chunk))
                out.update({row[0]: row[1] for row in conn.execute(stmt)})
        return out

    return lookup


def maybe_purge(client, hygiene, dry_run: bool) -> dict:
    memory = cache_core.memory_info(client)
    purge, reason = cache_core.should_purge(memory, hygiene.memory_purge_fragmentation, hygiene.memory_purge_min_excess_mb * MB)
    out = {"purge_needed": purge, "purge_reason": reason, "purged": False}
    if purge and not dry_run:
        client.execute_command("MEMORY", "PURGE")
        out["purged"] = True
    return out


def run_cache_cleanup(context, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource, trading_db: TradingDatabaseResource) -> dict:
    cfg = settings.get()
    hygiene = cfg.hygiene
    client = redis.get_client()
    failures: list[str] = []
    before = cache_core.memory_info(client)
    lookup_errors: list[str] = []

    base_lookup = order_status_lookup(trading_db.get_engine())

    def lookup(ids):
        try:
            return base_lookup(ids)
        except Exception as exc:  # noqa: BLE001 - reported below, keys kept
            lookup_errors.append(f"orders:pending rule: database lookup failed ({type(exc).__name__}); keys kept")
            return {}

    plan = cache_core.plan_cache_cleanup(
        client, hygiene.cache_namespaces, hygiene.cache_default_ttl_seconds, hygiene.cache_idle_delete_seconds, hygiene.scan_count, lookup
    )
    failures += lookup_errors
    failures += plan.refused_namespaces
    applied, unchanged = [], []
    if not config.dry_run:
        outcome = cache_core.apply_cache_plan(client, plan)
        applied, unchanged = outcome.applied, outcome.unchanged
        failures += [f"{f['key']}: {f['reason']}" for f in outcome.failed]
    memory_action = maybe_purge(client, hygiene, config.dry_run)
    after = cache_core.memory_info(client)
    shown = applied if not config.dry_run else plan.actions
    per_category: dict[str, dict[str, int]] = {}
    for a in shown:
        per_category.setdefault(a.category, {"set_ttl": 0, "delete_idle": 0, "delete_orphan": 0})[a.action] += 1
    cat_rows = [{"category": c, **v, "scanned": plan.scanned.get(c, "")} for c, v in sorted(per_category.items())]
    summary = {
        "keys_scanned": sum(plan.scanned.values()),
        "ttl_set": sum(1 for a in applied if a.action == "set_ttl"),
        "idle_deleted": sum(1 for a in applied if a.action == "delete_idle"),
        "orphans_deleted": sum(1 for a in applied if a.action == "delete_orphan"),
        "planned_ttl_set": plan.count("set_ttl"),
        "planned_idle_deleted": plan.count("delete_idle"),
        "planned_orphans_deleted": plan.count("delete_orphan"),
        "keys_skipped": len(plan.skipped),
        "keys_changed_meanwhile": len(unchanged),
        "used_memory_before": before["used_memory"],
        "used_memory_after": after["used_memory"],
        "fragmentation_before": before["mem_fragmentation_ratio"],
        "fragmentation_after": after["mem_fragmentation_ratio"],
        **memory_action,
    }
    rows = [{"key": a.key, "action": a.action, "type": a.key_type, "reason": a.reason} for a in shown]
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            **{k: v for k, v in summary.items() if not isinstance(v, str)},
            "purge_reason": summary["purge_reason"],
            "per_category": dg.MetadataValue.md(md_table(cat_rows)),
            "actions": dg.MetadataValue.md(md_table(rows, limit=200)),
            "skipped": dg.MetadataValue.md(md_table(plan.skipped, limit=100)),
            "rules_disabled": dg.MetadataValue.md("\n".join(f"- {r}" for r in plan.rules_disabled) or "none"),
        }
    )
    result = {
        "dry_run": config.dry_run,
        **summary,
        "per_category": cat_rows,
        "actions": rows[:500],
        "skipped": plan.skipped[:200],
        "rules_disabled": plan.rules_disabled,
    }
    return _finish(context, client, "cache_cleanup", result, failures)


@dg.op(
    description="SCAN the cache namespaces: TTL for keys without one, delete idle or orphaned keys, MEMORY PURGE when fragmented.",
    ins={"after": dg.In(dg.Nothing, description="optional: run after this step (emergency maintenance)")},
)
def clean_redis_caches(
    context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource, trading_db: TradingDatabaseResource
) -> dict:
    return run_cache_cleanup(context, config, settings, redis, trading_db)


# --- API rate limits -----------------------------------------------------------------------------


class RateLimitConfig(dg.Config):
    dry_run: bool = False
    today: str = ""  # ISO date in the platform's time zone; empty = now (for backfills and tests)


def run_rate_limit_reset(context, config: RateLimitConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    cfg = settings.get()
    hygiene = cfg.hygiene
    client = redis.get_client()
    tz = ZoneInfo(cfg.maintenance.scheduling.timezone)
    today = datetime.fromisoformat(config.today).date() if config.today else datetime.now(tz).date()
    day = today - timedelta(days=1)
    archived_at = datetime.now(timezone.utc).isoformat()
    failures: list[str] = []
    results, analyses = [], []
    for api in rate_core.discover_apis(client, hygiene.scan_count):
        res = rate_core.archive_and_reset(client, api, day, archived_at, config.dry_run)
        if res.failed:
            failures.append(f"{api}: {res.detail}")
        try:
            res.pruned = rate_core.prune_history(client, api, today, hygiene.rate_limit_history_days, config.dry_run)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{api}: pruning history failed ({type(exc).__name__})")
        results.append(res.as_dict())
        history = rate_core.read_history(client, api)
        analyses.append(rate_core.analyse(api, history, today, 90, hygiene.rate_limit_warn_share).as_dict())
    results.sort(key=lambda r: r["status"] not in ("reset", "dry_run"))  # counters reset (or to reset) first
    summary = {
        "apis": len(results),
        "counters_reset": sum(1 for r in results if r["status"] == "reset"),
        "already_reset_today": sum(1 for r in results if r["status"] == "already"),
        "skipped": sum(1 for r in results if r["status"] in ("wrong_type", "not_integer", "history_wrong_type")),
        "archived_day": day.isoformat(),
    }
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            **summary,
            "resets": dg.MetadataValue.md(md_table(results, ["api", "status", "day", "used", "limit", "pruned", "detail"])),
            "utilisation": dg.MetadataValue.md(
                md_table(analyses, ["api", "days", "peak_share", "mean_share", "days_above_warn", "days_over_quota", "recommendation"])
            ),
        }
    )
    result = {"dry_run": config.dry_run, **summary, "resets": results, "utilisation": analyses}
    return _finish(context, client, "api_rate_limit_reset", result, failures)


@dg.op(description="Archive yesterday's rate_limit:{api}:daily counts (with quota) into history and reset them atomically; analyse utilisation.")
def reset_api_rate_limits(context: dg.OpExecutionContext, config: RateLimitConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_rate_limit_reset(context, config, settings, redis)


# --- performance optimization (measure and recommend) --------------------------------------------


def run_performance(
    context, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource, trading_db: TradingDatabaseResource, system_probe: SystemProbeResource
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
        failures.append(f"redis measurement failed: {type(exc).__name__}")
        report["redis"] = {}
    try:
        report["database"] = perf_core.database_sessions(
            trading_db.get_engine(), hygiene.idle_in_transaction_minutes * 60, hygiene.terminate_idle_in_transaction, config.dry_run
        )
    except Exception as exc:  # noqa: BLE001
        failures.append(f"database measurement failed: {type(exc).__name__}")
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
        body += ["## Largest Redis keys", md_table(report["redis"].get("largest_keys", [])), "", "## Largest folders", md_table(folders[:15]), ""]
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
        "largest_keys": dg.MetadataValue.md(md_table(report["redis"].get("largest_keys", []))),
        "largest_folders": dg.MetadataValue.md(md_table(folders[:15])),
        "connections_by_state": dg.MetadataValue.json(report["network"].get("by_state", {})),
        "report_path": report_path or "(dry run: no report written)",
    }
    context.add_output_metadata(metadata)
    result = {"dry_run": config.dry_run, "recommendations": recs, "report_path": report_path, "db_sessions_terminated": terminated, **report}
    return _finish(context, client, "performance_optimization", result, failures)


@dg.op(description="Measure Redis memory and largest keys, database sessions, disk and inodes, network connections; write recommendations.")
def measure_performance(
    context: dg.OpExecutionContext,
    config: HygieneConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
) -> dict:
    return run_performance(context, config, settings, redis, trading_db, system_probe)


# --- resource optimization (safe actions) --------------------------------------------------------


def compression_candidates(cfg, now: float) -> list:
    """Old rotated logs (never the newest .1) and exports past compress_after_days, as plans."""
    tz = cfg.maintenance.scheduling.timezone
    forever = 10**6
    cats = [
        cleanup_core.Category("logs", str(cfg.logs_dir), forever, compress=True, exclude=cleanup_core.is_live_log, compress_exclude=cleanup_core.is_newest_rotated_log),
        cleanup_core.Category("exports", str(cfg.exports_dir), forever, cleanup_core.EXPORT_LAYOUTS, compress=True),
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
        open_ids = None if config.dry_run else cleanup_core.open_file_ids()
        for plan in compression_candidates(cfg, time.time()):
            for entry in plan.compress:
                if config.dry_run:
                    gz_rows.append({"path": _rel(entry.path, cfg.data_dir), "status": "would gzip", "bytes": entry.size})
                    continue
                res = cleanup_core.gzip_file(entry.path, entry.mtime, open_ids)
                gz_rows.append({"path": _rel(entry.path, cfg.data_dir), "status": "gzipped" if res.ok else res.reason, "bytes": entry.size})
                if res.ok:
                    gz_done += 1
                    gz_saved += res.bytes_before - res.bytes_after
                elif not res.reason.startswith(("held open", "gone before")):
                    failures.append(f"gzip {_rel(entry.path, cfg.data_dir)}: {res.reason}")
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
            "list_trims": dg.MetadataValue.md(md_table([t.as_dict() for t in trims])),
            "gzip": dg.MetadataValue.md(md_table(gz_rows, limit=200)),
        }
    )
    result = {"dry_run": config.dry_run, **summary, "list_trims": [t.as_dict() for t in trims], "list_skipped": trim_skipped, "gzip": gz_rows[:500]}
    return _finish(context, client, "resource_optimization", result, failures)


@dg.op(description="Safe actions: MEMORY PURGE when fragmentation is high, trim maintenance:* lists to their caps, gzip old rotated logs and exports.")
def optimize_resources(context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_resource_optimization(context, config, settings, redis)
