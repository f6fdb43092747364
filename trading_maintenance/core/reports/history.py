"""Maintenance history read from Dagster's own run and event storage (never a private log).

Everything downstream (reports, analysis, alerts) works on the plain rows built here, so a report
and an independent query of run storage can be compared number for number.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

TASK_TAG = "maintenance/task"
HEALTH_METRICS = ("health_score", "cpu_percent", "memory_percent", "disk_percent", "redis_used_memory_bytes", "load_1")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
# Counters in run metadata that name files a task acted on (kept/held files are not "processed").
FILES_PROCESSED_KEYS = (
    "files_deleted", "files_compressed", "duplicates_removed", "logs_rotated", "files_gzipped",
    "temp_files_deleted", "daily_files_deleted",
)
_ERROR_TYPE = re.compile(r"\b([A-Z][A-Za-z0-9_]*(?:Error|Exception|Failure|Timeout|Refused|Interrupt))\b")
MAX_ERROR_LINE = 300


@dataclass
class RunRow:
    run_id: str
    task: str
    job: str
    status: str
    created: float
    start: float | None
    end: float | None
    dry_run: bool = False
    bytes_freed: int = 0
    files_processed: int = 0
    error: str = ""
    error_type: str = ""
    trigger: str = ""

    @property
    def duration(self) -> float | None:
        return round(self.end - self.start, 3) if self.start and self.end and self.end >= self.start else None

    def as_dict(self) -> dict:
        return {**asdict(self), "duration": self.duration}


@dataclass(frozen=True)
class HealthPoint:
    timestamp: float
    values: dict


def is_dry_run(run_config: dict | None) -> bool:
    """A run whose op config sets dry_run anywhere: it changed nothing and counts apart."""
    ops = (run_config or {}).get("ops") or {}
    return any(isinstance(op, dict) and (op.get("config") or {}).get("dry_run") is True for op in ops.values())


def first_line(text: str) -> str:
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    return line[:MAX_ERROR_LINE]


def error_type(error_class: str | None, line: str, status: str) -> str:
    if status == "CANCELED":
        return "Canceled"
    if error_class:
        return error_class
    found = _ERROR_TYPE.search(line or "")
    return found.group(1) if found else "Unknown"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _run_records(instance, since: float, until: float):
    """Run records created in [since, until), oldest first, a page at a time (run ids as cursors)."""
    import dagster as dg

    filters = dg.RunsFilter(created_after=_utc(since), created_before=_utc(until))
    cursor = None
    while True:
        page = instance.get_run_records(filters, limit=PAGE_SIZE, cursor=cursor, ascending=True)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        cursor = page[-1].dagster_run.run_id


def load_runs(instance, since: float, until: float, exclude_run_ids: frozenset[str] = frozenset(),
              with_events: bool = True) -> list[RunRow]:
    """Runs created in [since, until), finished or not, with their metrics and first error line
    (`with_events=False`: statuses and durations only)."""
    rows = []
    for record in _run_records(instance, since, until):
        run = record.dagster_run
        if run.run_id in exclude_run_ids:
            continue
        created = record.create_timestamp.timestamp()
        if not since <= created < until:
            continue
        row = RunRow(
            run_id=run.run_id,
            task=run.tags.get(TASK_TAG, run.job_name),
            job=run.job_name,
            status=run.status.value,
            created=created,
            start=record.start_time,
            end=record.end_time,
            dry_run=is_dry_run(run.run_config),
            trigger=run.tags.get("maintenance/trigger")
            or ("schedule" if "dagster/schedule_name" in run.tags else "sensor" if "dagster/sensor_name" in run.tags else "manual"),
        )
        if with_events and row.status in FINISHED:
            _read_run_events(instance, row)
        rows.append(row)
    return rows


def describe_failure(instance, run_id: str, status: str) -> tuple[str, str]:
    """(first error line, error type) of a failed or canceled run."""
    row = RunRow(run_id=run_id, task="", job="", status=status, created=0.0, start=None, end=None)
    _read_run_events(instance, row)
    return row.error, row.error_type


def _read_run_events(instance, row: RunRow) -> None:
    from dagster import DagsterEventType

    kinds = {DagsterEventType.STEP_OUTPUT, DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_FAILURE,
             DagsterEventType.RUN_FAILURE}
    error_class, error_text = None, ""
    for record in instance.get_records_for_run(row.run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type in (DagsterEventType.STEP_OUTPUT, DagsterEventType.ASSET_MATERIALIZATION):
            metadata = (
                event.step_output_data.metadata if event.event_type == DagsterEventType.STEP_OUTPUT
                else event.step_materialization_data.materialization.metadata
            )
            if str(metadata.get("asset_key", "")) == "system_health":
                continue
            _add_counters(row, {k: getattr(v, "value", v) for k, v in (metadata or {}).items()})
        elif event.event_type == DagsterEventType.STEP_FAILURE and not error_text:
            error = event.step_failure_data.error if event.step_failure_data else None
            error_class = _root_class(error)
            error_text = _root_message(error) if error else record.event_log_entry.user_message
        elif event.event_type == DagsterEventType.RUN_FAILURE and not error_text:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            error_class = _root_class(error) if error else None
            error_text = _root_message(error) if error else (event.message or record.event_log_entry.user_message)
    if row.status == "CANCELED" and not error_text:
        error_text = "run canceled"
    if row.status in ("FAILURE", "CANCELED"):
        row.error = first_line(error_text) or "failed without an error message"
        row.error_type = error_type(error_class, row.error, row.status)


def _root_error(error):
    # Dagster wraps user errors ("Error occurred while executing op ..."); the cause names the problem.
    while error is not None and error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"):
        error = error.cause
    return error


def _root_class(error) -> str | None:
    root = _root_error(error)
    return root.cls_name if root is not None else None


def _root_message(error) -> str:
    root = _root_error(error)
    return root.message if root is not None else ""


def _add_counters(row: RunRow, metadata: dict) -> None:
    freed = metadata.get("bytes_freed")
    if isinstance(freed, (int, float)) and not isinstance(freed, bool):
        row.bytes_freed += int(freed)
    for key in FILES_PROCESSED_KEYS:
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row.files_processed += int(value)


def _health_records(instance, since: float, until: float):
    """`system_health` materializations in [since, until), oldest first: the time window is the
    storage's filter and pages follow its cursor, so no request exceeds Dagster's per-call record
    limit and records outside the window are never read."""
    import dagster as dg

    # after_timestamp is exclusive; the window's own start is kept by the check below.
    window = dg.AssetRecordsFilter(asset_key=dg.AssetKey("system_health"), after_timestamp=since - 0.001,
                                   before_timestamp=until)
    cursor = None
    while True:
        page = instance.fetch_materializations(window, limit=PAGE_SIZE, cursor=cursor, ascending=True)
        for record in page.records:
            if since <= record.timestamp < until:
                yield record
        if not page.has_more or not page.records:
            return
        cursor = page.cursor


# Well under Dagster's per-call limit on event records (10,000 by default, MAX_LIMIT_GET_EVENT_RECORDS).
PAGE_SIZE = 1000


def load_health(instance, since: float, until: float) -> list[HealthPoint]:
    """`system_health` materializations in [since, until), oldest first, numeric metrics only."""
    points = []
    for record in _health_records(instance, since, until):
        if record.asset_materialization is None:
            continue
        values = {}
        for name in HEALTH_METRICS:
            entry = record.asset_materialization.metadata.get(name)
            value = getattr(entry, "value", None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[name] = float(value)
        if values:
            points.append(HealthPoint(record.timestamp, values))
    return points
