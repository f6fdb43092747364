"""Redis cache cleanup: TTLs, idle and orphaned keys, memory: its ops, job and schedule."""

import dagster as dg
from sqlalchemy import select

from trading_maintenance.core.hygiene import cache as cache_core
from trading_maintenance.core.hygiene.failures import cause_of
from trading_maintenance.core.trading.schema import orders as orders_table
from trading_maintenance.defs.common import markdown_table
from trading_maintenance.defs.hygiene.common import HygieneConfig, finish_task
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
    TradingDatabaseResource,
)

CACHE_CLEANUP = MaintenanceTask(
    "cache_cleanup",
    "Redis cache cleanup: TTLs for cache keys, idle and orphaned keys deleted, memory before/after, MEMORY PURGE.",
)

MB = 1024 * 1024


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
            lookup_errors.append(f"orders:pending rule: database lookup failed ({cause_of(exc)}); keys kept")
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
        "findings_reported": len(plan.findings),
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
            "per_category": dg.MetadataValue.md(markdown_table(cat_rows)),
            "actions": dg.MetadataValue.md(markdown_table(rows, limit=200)),
            "skipped": dg.MetadataValue.md(markdown_table(plan.skipped, limit=100)),
            "findings": dg.MetadataValue.md(markdown_table(plan.findings, limit=100)),
            "rules_disabled": dg.MetadataValue.md("\n".join(f"- {r}" for r in plan.rules_disabled) or "none"),
        }
    )
    result = {
        "dry_run": config.dry_run,
        **summary,
        "per_category": cat_rows,
        "actions": rows[:500],
        "skipped": plan.skipped[:200],
        "findings": plan.findings[:200],
        "rules_disabled": plan.rules_disabled,
    }
    return finish_task(context, client, "cache_cleanup", result, failures)


@dg.op(
    pool=CACHE_CLEANUP.pool,
    description="SCAN the cache namespaces: TTL for keys without one, delete idle or orphaned keys, MEMORY PURGE when fragmented.",
    ins={"after": dg.In(dg.Nothing, description="optional: run after this step (emergency maintenance)")},
)
def clean_redis_caches(
    context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource, trading_db: TradingDatabaseResource
) -> dict:
    return run_cache_cleanup(context, config, settings, redis, trading_db)


@CACHE_CLEANUP.op_job("cache_cleanup_job")
def cache_cleanup_job():
    clean_redis_caches()


cache_cleanup_schedule = CACHE_CLEANUP.schedule(cache_cleanup_job)
