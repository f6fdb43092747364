"""What every domain's Dagster code shares: run tags, result publishing, atomic file writes."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from trading_maintenance.core.common.atomic import atomic_write_bytes, atomic_write_text
from trading_maintenance.settings import get_settings

TIMEZONE = "America/New_York"
RESULT_KEY = "maintenance:result:{task}"
HISTORY_KEY = "maintenance:history"
HISTORY_MAX = 1000

__all__ = ["atomic_write_bytes", "atomic_write_text", "job_tags", "md_table", "publish_result", "maintenance_window_schedule"]


def job_tags(task: str, **extra: str) -> dict[str, str]:
    """Tags for every job: the task name (CLI and history use it) and the run time limit."""
    timeout = get_settings().tasks.task_timeout_minutes
    return {"maintenance/task": task, "dagster/max_runtime": str(timeout * 60), **extra}


def publish_result(redis_client, task: str, result: dict[str, Any], log=None) -> bool:
    """Write maintenance:result:{task} and push a summary to maintenance:history.

    Returns False (and logs) when Redis cannot be reached: publishing is a courtesy to the other
    services and never the reason a maintenance run fails.
    """
    payload = {"task": task, "finished_at": datetime.now(timezone.utc).isoformat(), **result}
    summary = {k: payload[k] for k in ("task", "finished_at", "status", "run_id", "score", "dry_run") if k in payload}
    try:
        pipe = redis_client.pipeline()
        pipe.set(RESULT_KEY.format(task=task), json.dumps(payload, default=str))
        pipe.lpush(HISTORY_KEY, json.dumps(summary, default=str))
        pipe.ltrim(HISTORY_KEY, 0, HISTORY_MAX - 1)
        pipe.execute()
        return True
    except Exception as exc:  # noqa: BLE001
        if log is not None:
            log.warning(f"could not publish {task} result to Redis: {type(exc).__name__}: {exc}")
        return False


def md_table(rows: list[dict[str, Any]], columns: list[str] | None = None, limit: int = 50) -> str:
    """A small Markdown table for MetadataValue.md."""
    if not rows:
        return "_none_"
    columns = columns or list(rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown_")
    return "\n".join(lines)


CRON_WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}


def maintenance_window_cron(hour: int, offset_minutes: int = 0, weekly_day: str | None = None) -> tuple[str, str]:
    """(cron, human time) for a task `offset_minutes` after the daily maintenance hour, on the weekly
    maintenance day when given; an offset past midnight moves a weekly task to the next day."""
    total = hour * 60 + offset_minutes
    day_shift, minute_of_day = divmod(total, 24 * 60)
    hh, mm = divmod(minute_of_day, 60)
    if weekly_day is None:
        return f"{mm} {hh} * * *", f"daily {hh:02d}:{mm:02d} ET"
    dow = (CRON_WEEKDAYS[weekly_day] + day_shift) % 7
    name = next(d for d, n in CRON_WEEKDAYS.items() if n == dow)
    return f"{mm} {hh} * * {dow}", f"{name.capitalize()} {hh:02d}:{mm:02d} ET"


def maintenance_window_schedule(name: str, job, what: str, offset_minutes: int = 0, weekly: bool = False):
    """A schedule in the maintenance window of settings (daily_maintenance_hour, weekly_maintenance_day)."""
    import dagster as dg

    scheduling = get_settings().maintenance.scheduling
    cron, when = maintenance_window_cron(
        scheduling.daily_maintenance_hour, offset_minutes, scheduling.weekly_maintenance_day if weekly else None
    )
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{when}: {what}",
    )
