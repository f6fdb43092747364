"""What every task's Dagster code shares: publishing a result to Redis, Markdown tables for metadata."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

RESULT_KEY = "maintenance:result:{task}"
HISTORY_KEY = "maintenance:history"
HISTORY_MAX = 1000


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


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None, limit: int = 50) -> str:
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
