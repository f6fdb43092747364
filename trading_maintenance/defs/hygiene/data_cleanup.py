"""Data cleanup: retention per category, duplicates, compression of old kept files: its ops, job and schedule."""

import os
import time

import dagster as dg

from trading_maintenance.core.hygiene import cleanup as cleanup_core
from trading_maintenance.core.hygiene.open_files import open_file_ids
from trading_maintenance.defs.common import markdown_table
from trading_maintenance.defs.hygiene.common import HygieneConfig, actions_first, finish_task, relative_to_root
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
)

DATA_CLEANUP = MaintenanceTask(
    "data_cleanup",
    "Data cleanup: retention per category (market data only once archived), duplicate files, gzip of old kept files, verified.",
)


def archived_market_data(settings) -> tuple[set[str] | None, str]:
    """Real paths of daily market-data files a verified monthly archive covers, and where that came
    from; None when coverage cannot be determined: then no market-data file is deleted."""
    from trading_maintenance.core.market_data.retention import archived_daily_files  # polars: loaded by a run

    try:
        # files listed in a verified manifest, unchanged since (size, mtime, hash), every key re-read and found in the archive
        files = archived_daily_files(settings.market_data_dir)
    except Exception as exc:  # noqa: BLE001 - unknown coverage means keep everything
        return None, f"archived_daily_files failed ({type(exc).__name__}): no market-data file deleted"
    return {os.path.realpath(str(p)) for p in files}, "verified monthly archives (core.market_data.retention.archived_daily_files)"


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
    open_ids = open_file_ids()
    for category, plan in zip(categories, plans):
        for path, reason in plan.skipped:
            actions.append({"category": plan.name, "action": "skip", "path": relative_to_root(path, root), "reason": reason})
        for path in plan.temporaries:
            actions.append({"category": plan.name, "action": "left alone", "path": relative_to_root(path, root), "reason": "temporary file of another task"})
        for path, note in plan.notes:
            actions.append({"category": plan.name, "action": "note", "path": relative_to_root(path, root), "reason": note})
        if config.dry_run:
            cleanup_core.keep_files_held_open(plan, open_ids)
        row = plan.summary()
        totals["name_date_notes"] += len(plan.notes)
        if config.dry_run:
            actions += _file_actions(plan.name, root, plan.stale_temporaries, plan.delete, plan.duplicates,
                                     [(e.path, True, f"age {e.age_seconds / 86400:.2f} d") for e in plan.compress], dry_run=True)
            row.update(deleted_files=0, deduplicated_files=0, compressed_files=0, bytes_freed=0, planned_bytes=plan.bytes_to_free)
        else:
            outcome = cleanup_core.apply_category(plan, open_ids)
            cleanup_core.verify_category(plan, outcome, category, cfg.data_dir, now, tz, archived)
            actions += _file_actions(plan.name, root, outcome.stale_removed, outcome.deleted, outcome.deduplicated,
                                     [(r.path, r.ok, r.reason) for r in outcome.compressed], dry_run=False)
            failures += [f"{plan.name}: {relative_to_root(p, root)}: {r}" for p, r in outcome.failed]
            failures += [f"{plan.name}: verification: {p}" for p in outcome.problems]
            row.update(outcome.summary())
            totals["files_deleted"] += len(outcome.deleted)
            totals["duplicates_removed"] += len(outcome.deduplicated)
            totals["files_compressed"] += sum(1 for r in outcome.compressed if r.ok)
            totals["bytes_freed"] += outcome.bytes_freed
        for held in plan.held:  # after applying: files found held open are added to the plan's held
            actions.append({"category": plan.name, "action": "keep", "path": relative_to_root(held.path, root), "reason": held.reason})
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
        "categories": dg.MetadataValue.md(markdown_table(rows)),
        "actions": dg.MetadataValue.md(markdown_table(actions, ["category", "action", "files", "path", "reason"], limit=200)),
    }
    context.add_output_metadata(metadata)
    context.log.info(
        ("dry run: would delete " if config.dry_run else "deleted ")
        + f"{planned['planned_deletions'] if config.dry_run else totals['files_deleted']} files; market data: {archive_source}"
    )
    result = {"dry_run": config.dry_run, **totals, **planned, "market_data_coverage": archive_source, "categories": rows, "actions": actions[:500]}
    return finish_task(context, redis.get_client(), "data_cleanup", result, failures)


@dg.op(
    pool=DATA_CLEANUP.pool,
    description="Apply retention per category (market data only when archived), remove duplicate files, gzip old kept files, verify.",
)
def clean_data_files(context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_data_cleanup(context, config, settings, redis)


@DATA_CLEANUP.op_job("data_cleanup_job")
def data_cleanup_job():
    clean_data_files()


data_cleanup_schedule = DATA_CLEANUP.schedule(data_cleanup_job)


def _file_actions(category: str, root, temporaries, deleted, duplicates, compressed, dry_run: bool) -> list[dict]:
    """The action rows of one category: what a dry run would do, or what was done (same rows, past tense).
    compressed: (path, ok, reason) of each file gzipped or to gzip."""
    removed, deleted_verb, duplicate = (("would remove temporary", "would delete", "would delete duplicate") if dry_run
                                        else ("removed temporary", "deleted", "deleted duplicate"))
    rows = [(t.path, removed, t.reason) for t in temporaries]
    rows += [(e.path, deleted_verb, f"age {e.age_seconds / 86400:.2f} d") for e in deleted]
    rows += [(d.path, duplicate, f"same as {relative_to_root(d.original, root)}") for d in duplicates]
    rows += [(path, "would gzip" if dry_run else ("gzipped" if ok else "not gzipped"), reason) for path, ok, reason in compressed]
    return [{"category": category, "action": action, "path": relative_to_root(path, root), "reason": reason} for path, action, reason in rows]
