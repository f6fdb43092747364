"""Log rotation: rename rotation without losing a line: its ops, job and schedule."""

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.core.hygiene import log_rotation as rotation_core
from trading_maintenance.core.hygiene.open_files import open_file_ids
from trading_maintenance.defs.common import markdown_table
from trading_maintenance.defs.hygiene.common import HygieneConfig, actions_first, finish_task, relative_to_root
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
)

LOG_ROTATION = MaintenanceTask(
    "log_rotation",
    "Log rotation by rename (.1 ... .5 per log), gzip of old rotated logs; no line lost or duplicated.",
)

MB = 1024 * 1024


ROTATION_STATE = Path("state") / "log_rotation.json"


def run_log_rotation(context, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    cfg = settings.get()
    now = time.time()
    compress_after = cfg.hygiene.compress_after_days * 86400 if cfg.maintenance.performance.compression_enabled else None
    open_ids = open_file_ids()
    plan = rotation_core.plan_rotation(
        cfg.logs_dir, cfg.maintenance.performance.max_file_size_mb * MB, cfg.hygiene.log_rotations_kept, now, compress_after, open_ids
    )
    root = cfg.data_dir
    rows = [
        {
            "action": op.action,
            "path": relative_to_root(op.path, root),
            "target": relative_to_root(op.target, root) if op.target else "",
            "bytes": op.bytes,
            "reason": op.reason,
        }
        for op in plan.ops
    ]
    rows += [
        {"action": "skip", "path": relative_to_root(op.path, root), "target": "", "bytes": op.bytes, "reason": op.reason}
        for op in plan.notes + plan.blocked
    ]
    rows = actions_first(rows)
    failures: list[str] = [f"{relative_to_root(op.path, root)}: {op.reason}" for op in plan.blocked]
    if config.dry_run:
        summary = {"logs_rotated": 0, "files_compressed": 0, "files_deleted": 0, "bytes_freed": 0}
    else:
        outcome = rotation_core.apply_rotation(plan, open_ids)
        problems = rotation_core.verify_rotation(plan, outcome)
        failures += [f"{op.action} {relative_to_root(op.path, root)}: {mask_text(reason)}" for op, reason in outcome.failed]
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
            "plan": dg.MetadataValue.md(markdown_table(rows, ["action", "files", "path", "target", "bytes", "reason"], limit=200)),
        }
    )
    result = {"dry_run": config.dry_run, **summary, **planned, "actions": rows[:500]}
    return finish_task(context, redis.get_client(), "log_rotation", result, failures)


@dg.op(pool=LOG_ROTATION.pool, description="Rotate logs over max_file_size_mb by rename (.1, .2 ... per log), gzip old rotated files, delete beyond the count.")
def rotate_logs(context: dg.OpExecutionContext, config: HygieneConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_log_rotation(context, config, settings, redis)


@LOG_ROTATION.op_job("log_rotation_job")
def log_rotation_job():
    rotate_logs()


log_rotation_schedule = LOG_ROTATION.schedule(log_rotation_job)
