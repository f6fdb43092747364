"""Answers read from Dagster's run and event storage and the results the tasks publish in Redis."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from trading_maintenance.api.context import ApiContext
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.core.runs.metrics import FinishedRun, window_figures, work_done
from trading_maintenance.instance_read import RunRow, iso, run_trigger
from trading_maintenance.run_launch import TASK_TAG
from trading_maintenance.tasks import TASKS

HEALTH_ASSET = "system_health"
RESULT_PATTERN = "maintenance:result:*"
MAX_RESULT_BYTES = 256 * 1024  # a published result larger than this is summarised, not shown
METRIC_WINDOWS = (7, 30)
MAX_HEALTH_POINTS = 10_000  # Dagster reads at most this many event records at once


def run_summary(row: RunRow) -> dict:
    duration = row.end_time - row.start_time if row.end_time and row.start_time else None
    return {
        "run_id": row.run_id,
        "job": row.job_name,
        "task": row.tags.get(TASK_TAG, ""),
        "status": row.status,
        "trigger": run_trigger(row.tags),
        "partition": row.tags.get("dagster/partition"),
        "created_at": iso(row.created_at),
        "started_at": iso(row.start_time),
        "ended_at": iso(row.end_time),
        "duration_s": round(duration, 3) if duration is not None else None,
    }


def _row_of(record) -> RunRow:
    run = record.dagster_run
    return RunRow(run.run_id, run.job_name, run.status.value, dict(run.tags), record.start_time, record.end_time,
                  record.create_timestamp.timestamp() if record.create_timestamp else None)


# ---- health ---------------------------------------------------------------------------------------


def _metadata_value(metadata, key):
    entry = metadata.get(key)
    return getattr(entry, "value", entry) if entry is not None else None


def latest_health(ctx: ApiContext) -> dict | None:
    event = ctx.storage_reader().latest_materialization(HEALTH_ASSET)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    reasons = _metadata_value(metadata, "reason_list")
    if reasons is None:  # recorded before the list was: the markdown bullets
        text = _metadata_value(metadata, "reasons") or ""
        reasons = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    components = _metadata_value(metadata, "component_list") or []
    return {
        "score": _metadata_value(metadata, "health_score"),
        "status": _metadata_value(metadata, "health_status"),
        "checked_at": iso(event.timestamp),
        "run_id": event.run_id,
        "reasons": [str(reason) for reason in reasons],
        "components": [component for component in components if isinstance(component, dict)],
    }


def health_history(ctx: ApiContext, hours: int) -> list[dict]:
    from dagster import AssetKey, AssetRecordsFilter

    since = time.time() - hours * 3600
    records = ctx.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(HEALTH_ASSET), after_timestamp=since), limit=MAX_HEALTH_POINTS
    ).records
    points = []
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        score = _metadata_value(metadata, "health_score")
        if isinstance(score, (int, float)):
            points.append({"at": iso(record.timestamp), "score": float(score), "status": _metadata_value(metadata, "health_status")})
    return sorted(points, key=lambda point: point["at"])


# ---- Redis: results and alerts --------------------------------------------------------------------


def _task_result(raw: bytes | None, masker) -> dict | None:
    if raw is None:
        return None
    if len(raw) > MAX_RESULT_BYTES:
        return {"task": "", "details": {"note": f"result of {len(raw)} bytes not shown"}}
    try:
        payload = json.loads(masker(raw.decode("utf-8", "replace")))
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    known = {key: payload.pop(key, None) for key in ("task", "finished_at", "status", "run_id", "dry_run")}
    return {
        "task": str(known["task"] or ""),
        "finished_at": str(known["finished_at"]) if known["finished_at"] else None,
        "status": str(known["status"]) if known["status"] is not None else None,
        "run_id": str(known["run_id"]) if known["run_id"] else None,
        "dry_run": known["dry_run"] if isinstance(known["dry_run"], bool) else None,
        "details": payload,
    }


def _masker(ctx: ApiContext):
    secrets = ctx.settings.secret_values()
    return lambda text: mask_text(text, secrets)


def last_results(ctx: ApiContext, problems: list[str]) -> list[dict]:
    try:
        client = ctx.redis()
        keys = sorted(client.scan_iter(match=RESULT_PATTERN, count=500))
        values = client.mget(keys) if keys else []
    except Exception as exc:  # noqa: BLE001 - a dead Redis is a problem to show, not a 500
        problems.append(f"Redis: last results unavailable ({type(exc).__name__})")
        return []
    masker = _masker(ctx)
    results = []
    for key, raw in zip(keys, values):
        result = _task_result(raw, masker)
        if result is not None:
            result["task"] = result["task"] or key.decode(errors="replace").rsplit(":", 1)[-1]
            results.append(result)
    return results


def result_of_task(ctx: ApiContext, task: str) -> dict | None:
    try:
        raw = ctx.redis().get(f"maintenance:result:{task}")
    except Exception:  # noqa: BLE001 - the run's own record still answers
        return None
    return _task_result(raw, _masker(ctx))


def active_alerts(ctx: ApiContext, problems: list[str]) -> list[dict]:
    """The unresolved alerts (an alert leaves `maintenance:alerts` when its condition clears)."""
    from trading_maintenance.resources.alerts import active_alerts as unresolved

    try:
        entries = unresolved(ctx.redis())
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis: alerts unavailable ({type(exc).__name__})")
        return []
    masker = _masker(ctx)
    return [
        {"key": masker(str(entry.get("key", ""))), "severity": str(entry.get("severity", "")),
         "title": masker(str(entry.get("title", ""))), "message": masker(str(entry.get("message", ""))),
         "created_at": str(entry.get("created_at", "")), "source": str(entry.get("source", ""))}
        for entry in entries
    ]


# ---- runs -----------------------------------------------------------------------------------------


def runs_with_status(ctx: ApiContext, statuses) -> list[dict]:
    return [run_summary(row) for row in ctx.storage_reader().runs(500, statuses=tuple(status.value for status in statuses))]


def status(ctx: ApiContext) -> dict:
    from dagster import DagsterRunStatus

    problems: list[str] = []
    return {
        "health": latest_health(ctx),
        "runs_in_progress": runs_with_status(ctx, [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]),
        "queued_runs": runs_with_status(ctx, [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]),
        "last_results": last_results(ctx, problems),
        "active_alerts": active_alerts(ctx, problems),
        "problems": problems,
    }


def history(ctx: ApiContext, limit: int, job_name: str | None) -> list[dict]:
    return [run_summary(row) for row in ctx.storage_reader().runs(limit, job_name=job_name)]


def _step_metadata(ctx: ApiContext, run_id: str):
    """(step key, {metadata key: plain value}) of the run's outputs and materializations."""
    from dagster import DagsterEventType

    event_types = {DagsterEventType.STEP_OUTPUT, DagsterEventType.ASSET_MATERIALIZATION}
    for entry in ctx.instance.all_logs(run_id, of_type=event_types):
        event = entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        metadata = getattr(getattr(data, "materialization", None), "metadata", None) or getattr(data, "metadata", None) or {}
        yield event.step_key or "", {key: getattr(value, "value", value) for key, value in metadata.items()}


def run_detail(ctx: ApiContext, run_id: str) -> dict | None:
    from dagster import RunsFilter

    from trading_maintenance.run_launch import outcome_of

    records = ctx.instance.get_run_records(RunsFilter(run_ids=[run_id]), limit=1)
    if not records:
        return None
    record = records[0]
    run = record.dagster_run
    masker = _masker(ctx)
    metadata = {}
    for step_key, values in _step_metadata(ctx, run_id):
        for key, value in values.items():
            if isinstance(value, (bool, int, float)):
                metadata[f"{step_key}.{key}"] = value
            elif isinstance(value, str) and len(value) <= 2000:
                metadata[f"{step_key}.{key}"] = masker(value)
    task = run.tags.get(TASK_TAG, "")
    result = result_of_task(ctx, task) if task else None
    return {
        **run_summary(_row_of(record)),
        "tags": {key: masker(value) for key, value in run.tags.items()},
        "failures": [masker(text) for text in outcome_of(ctx.instance, run_id).failures] if run.is_finished else [],
        "result": result if result is not None and result.get("run_id") == run_id else None,
        "metadata": metadata,
    }


def task_metrics(ctx: ApiContext, task_names: list[str]) -> list[dict]:
    from dagster import RunsFilter

    now = time.time()
    since = datetime.fromtimestamp(now - max(METRIC_WINDOWS) * 86400, timezone.utc)
    answer = []
    for name in task_names:
        task = TASKS[name]
        runs = []
        for record in ctx.instance.get_run_records(RunsFilter(job_name=task.job_name, created_after=since)):
            run = record.dagster_run
            duration = record.end_time - record.start_time if record.end_time and record.start_time else None
            bytes_freed, files = _work_done(ctx, run.run_id, run.is_finished)
            runs.append(FinishedRun(record.create_timestamp.timestamp(), run.status.value, duration, bytes_freed, files))
        answer.append({"task": name, "job": task.job_name, "windows": [window_figures(runs, now, days) for days in METRIC_WINDOWS]})
    return answer


def _work_done(ctx: ApiContext, run_id: str, finished: bool) -> tuple[int, int]:
    cached = ctx.work_done_cache.get(run_id)
    if cached is not None:
        return cached
    figures = work_done(_step_metadata(ctx, run_id))
    if finished:  # a finished run's events never change
        ctx.work_done_cache[run_id] = figures
    return figures


# ---- schedules and sensors ------------------------------------------------------------------------


def schedules(ctx: ApiContext) -> list[dict]:
    from dagster._utils.schedules import cron_string_iterator

    repo = ctx.defs.get_repository_def()
    states = {state.name: state for state in ctx.instance.all_instigator_state()}
    items = []
    for schedule in repo.schedule_defs:
        state = states.get(schedule.name)
        status = _running_or_stopped(state, schedule.default_status.value)
        timezone_name = schedule.execution_timezone or "UTC"
        next_tick = next(cron_string_iterator(time.time(), schedule.cron_schedule, timezone_name)).isoformat()
        items.append({"name": schedule.name, "kind": "schedule", "job": schedule.job_name, "cron": str(schedule.cron_schedule),
                      "timezone": timezone_name, "status": status, "next_tick": next_tick,
                      "description": schedule.description or ""})
    for sensor in repo.sensor_defs:
        state = states.get(sensor.name)
        status = _running_or_stopped(state, sensor.default_status.value)
        items.append({"name": sensor.name, "kind": "sensor", "job": ", ".join(job.name for job in sensor.jobs) if sensor.has_jobs else "",
                      "cron": f"every {sensor.minimum_interval_seconds}s", "timezone": "", "status": status,
                      "next_tick": None, "description": sensor.description or ""})
    return items


def _running_or_stopped(state, default_status: str) -> str:
    """The instance's state when one was stored (paused or resumed in the UI, CLI or API); a state
    declared in code follows the definition's default."""
    status = state.status.value if state is not None else default_status
    if status == "DECLARED_IN_CODE":
        status = default_status
    return "RUNNING" if status == "RUNNING" else "STOPPED"
