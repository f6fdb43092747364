"""What every task's Dagster code shares: publishing a result to Redis, Markdown tables for metadata."""

from __future__ import annotations

import dataclasses
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


def partition_check_result(partition_key: str, *, passed: bool, description: str | None = None, **kwargs):
    """An asset check result that says which partition it checked: Dagster's check results carry no
    partition, so the key goes into the metadata and the description the UI shows."""
    import dagster as dg

    metadata = {"partition": dg.MetadataValue.text(partition_key), **(kwargs.pop("metadata", None) or {})}
    text = f"partition {partition_key}" + (f": {description}" if description else "")
    return dg.AssetCheckResult(passed=passed, description=text, metadata=metadata, **kwargs)


def record_dry_run_plan(context, asset_key, counts: dict[str, int], items: list[str], where: str = "", limit: int = 20) -> None:
    """A dry run leaves no materialization and no check result: its plan goes to the run's log and
    onto the asset as an observation (counts per action, the first items, where the whole plan is).

    Assets with a dry run declare `output_required=False` and yield nothing after calling this.
    """
    import dagster as dg

    summary = ", ".join(f"{count} {action}" for action, count in counts.items()) or "nothing to do"
    lines = [f"dry run, nothing changed: would {summary}"]
    lines += [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more" + (f": the whole plan is in {where}" if where else ""))
    elif where:
        lines.append(f"  whole plan: {where}")
    context.log.info("\n".join(lines))
    metadata = {
        "dry_run": dg.MetadataValue.bool(True),
        **{f"would_{action}": dg.MetadataValue.int(count) for action, count in counts.items()},
        "first_items": dg.MetadataValue.md("\n".join(f"- {item}" for item in items[:limit]) or "none"),
    }
    if where:
        metadata["plan"] = dg.MetadataValue.text(where)
    partition = context.partition_key if context.has_partition_key else None
    context.log_event(dg.AssetObservation(asset_key=asset_key, partition=partition, metadata=metadata))


def conclude(context, redis_client, task: str, result: dict[str, Any], *, alerts=None, alert=None,
             failure: str = "", failure_metadata: dict | None = None) -> bool:
    """The end of a task's run, the same for every task: publish `result` (maintenance:result:<task>
    and the history), send `alert` (one alert or a list of them) when there is one, then fail the
    run when `failure` says what went wrong. Returns whether Redis took the result."""
    import dagster as dg

    published = redis_client is not None and publish_result(redis_client, task, result, context.log)
    to_send = alert if isinstance(alert, (list, tuple)) else [alert] if alert is not None else []
    for one in to_send if alerts is not None else []:
        # Named after its task, the alert is resolved by the task's next successful run.
        one = dataclasses.replace(one, details={"task": task, **one.details})
        dispatch = alerts.send(one, redis_client if published else None)
        for channel in dispatch.failed_channels:
            context.log.warning(f"alert channel {channel} failed for {one.key}: {dispatch.channels[channel]}")
    if failure:
        # from None: a failure raised while handling an error never carries that error (or what it quotes)
        raise dg.Failure(description=failure, metadata=failure_metadata or {}) from None
    return published
