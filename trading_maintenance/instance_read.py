"""Reading the instance for `status`, `maintenance history` and `maintenance schedule`.

These commands only read, so they never load the code location (trading_maintenance.definitions
and its pandas, polars, pyarrow, exchange-calendars imports). With Dagster's default local storage
(the instance file names no storage) they read its SQLite files read-only with the standard library
and decode rows with Dagster's own deserializer: no SQLAlchemy, Alembic or storage classes, whose
imports alone cost more than `import dagster`. Any other storage (PostgreSQL) is opened through
Dagster's storage classes, without a full DagsterInstance. A test checks both readers agree.

The declared schedules come from the schedule table (core/runs/schedule_table.py), which is data; the few
instigators declared outside it are listed in DECLARED_OUTSIDE_TABLE, which a test keeps equal to
the definitions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from trading_maintenance.instance import HomeState, InstanceError, describe_instance_error, home_lock, prepare_home

HEALTH_ASSET = "system_health"
TASK_TAG = "maintenance/task"
TRIGGER_TAG = "maintenance/trigger"
CODE_DEFAULT_RUNNING = "RUNNING"  # every schedule of the table and every instigator below is declared RUNNING


@dataclass(frozen=True)
class DeclaredInstigator:
    name: str
    kind: str  # schedule / sensor
    cron_or_interval: str  # a schedule's cron (in the platform's time zone), a sensor's minimum interval in seconds
    description: str


DECLARED_OUTSIDE_TABLE: tuple[DeclaredInstigator, ...] = (
    DeclaredInstigator("maintenance_report_daily_schedule", "schedule", "0 18 * * 1-5", "the day's maintenance report on NYSE trading days"),
    DeclaredInstigator("maintenance_report_weekly_schedule", "schedule", "0 6 * * 0", "the report of the week that just ended"),
    DeclaredInstigator("adaptive_maintenance_sensor", "sensor", "300", "acts on the trend analysis (disk, cache, errors)"),
    DeclaredInstigator("backup_verification_sensor", "sensor", "60", "restore drill once after each real backup"),
    DeclaredInstigator("emergency_maintenance_sensor", "sensor", "30", "emergency maintenance once per incident of low health"),
    DeclaredInstigator("maintenance_degradation_sensor", "sensor", "300", "warns when tasks or health metrics degrade"),
    DeclaredInstigator("maintenance_run_canceled_sensor", "sensor", "30", "alerts once per canceled maintenance run"),
    DeclaredInstigator("maintenance_run_failure_sensor", "sensor", "30", "alerts once per failed maintenance run"),
    DeclaredInstigator("maintenance_run_success_sensor", "sensor", "30", "resolves a task's failure alert when it succeeds"),
    DeclaredInstigator("platform_probe_sensor", "sensor", "60", "probes Redis, the database, disk and memory every minute"),
    DeclaredInstigator("stranded_launch_sensor", "sensor", "30", "puts runs a dying daemon left half-launched back in the queue"),
)


@dataclass
class RunRow:
    run_id: str
    job_name: str
    status: str
    tags: dict
    start_time: float | None
    end_time: float | None
    created_at: float | None = None


class DagsterStorageReader:
    """Any storage, through Dagster's storage classes (slower to import)."""

    def __init__(self, storage):
        self.storage = storage

    def latest_materialization(self, asset: str):
        from dagster import AssetKey

        key = AssetKey(asset)
        return self.storage.event_log_storage.get_latest_materialization_events([key]).get(key)

    def runs(self, limit: int, tag: tuple[str, str] | None = None, statuses: tuple[str, ...] = (),
             job_name: str | None = None) -> list[RunRow]:
        from dagster import DagsterRunStatus, RunsFilter

        filters = RunsFilter(tags={tag[0]: tag[1]} if tag else {}, statuses=[DagsterRunStatus(s) for s in statuses],
                             job_name=job_name)
        return [
            RunRow(r.dagster_run.run_id, r.dagster_run.job_name, r.dagster_run.status.value, dict(r.dagster_run.tags), r.start_time, r.end_time,
                   r.create_timestamp.timestamp() if r.create_timestamp else None)
            for r in self.storage.run_storage.get_run_records(filters=filters, limit=limit)
        ]

    def tag_values(self, key: str) -> set[str]:
        return {value for found, values in self.storage.run_storage.get_run_tags(tag_keys=[key]) if found == key for value in values}

    def instigator_states(self) -> list:
        return list(self.storage.schedule_storage.all_instigator_state())


class SqliteFilesReader:
    """Dagster's default local storage under DAGSTER_HOME (history/runs.db, history/runs/index.db,
    schedules/schedules.db), opened read-only; a missing file is an instance with nothing in it yet."""

    def __init__(self, home: Path):
        self.runs_db = home / "history" / "runs.db"
        self.index_db = home / "history" / "runs" / "index.db"
        self.schedules_db = home / "schedules" / "schedules.db"

    def _query(self, path: Path, sql: str, params: tuple = ()) -> list[tuple]:
        if not path.is_file():
            return []
        try:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)) as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise InstanceError(f"cannot read the Dagster storage {path}: {type(exc).__name__}: {exc}") from None

    def latest_materialization(self, asset: str):
        from dagster._core.events.log import EventLogEntry
        from dagster_shared.serdes import deserialize_value

        rows = self._query(
            self.index_db,
            "SELECT event FROM event_logs WHERE asset_key = ? AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY id DESC LIMIT 1",
            (json.dumps([asset]),),  # how Dagster stores an AssetKey (AssetKey.to_string)
        )
        return deserialize_value(rows[0][0], EventLogEntry) if rows else None

    def runs(self, limit: int, tag: tuple[str, str] | None = None, statuses: tuple[str, ...] = (),
             job_name: str | None = None) -> list[RunRow]:
        conditions, params = [], []
        if tag:
            conditions.append("run_id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)")
            params += tag
        if statuses:
            conditions.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if job_name:
            conditions.append("pipeline_name = ?")
            params.append(job_name)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        found = self._query(
            self.runs_db,
            f"SELECT run_id, pipeline_name, status, start_time, end_time, create_timestamp FROM runs {where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        tags: dict[str, dict] = {run_id: {} for run_id, *_ in found}
        if found:
            marks = ",".join("?" * len(found))
            for run_id, key, value in self._query(self.runs_db, f"SELECT run_id, key, value FROM run_tags WHERE run_id IN ({marks})", tuple(tags)):
                tags[run_id][key] = value
        return [RunRow(run_id, job, status, tags[run_id], start, end, _utc_timestamp(created))
                for run_id, job, status, start, end, created in found]

    def tag_values(self, key: str) -> set[str]:
        return {value for (value,) in self._query(self.runs_db, "SELECT DISTINCT value FROM run_tags WHERE key = ?", (key,))}

    def instigator_states(self) -> list:
        from dagster._core.scheduler.instigation import InstigatorState
        from dagster_shared.serdes import deserialize_value

        return [deserialize_value(body, InstigatorState) for (body,) in self._query(self.schedules_db, "SELECT job_body FROM jobs")]


def _utc_timestamp(stored: str | None) -> float | None:
    """Dagster stores a run's creation time as naive UTC text."""
    if not stored:
        return None
    return datetime.fromisoformat(str(stored)).replace(tzinfo=timezone.utc).timestamp()


STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


def open_reader():
    """(a reader of the instance's storage, HomeState); any failure is an InstanceError naming DAGSTER_HOME."""
    state: HomeState = prepare_home()
    instance_file = state.home / "dagster.yaml"
    config = yaml.safe_load(instance_file.read_text()) if instance_file.is_file() else {}
    if not any(key in (config or {}) for key in STORAGE_KEYS):
        return SqliteFilesReader(state.home), state
    from dagster._core.instance.ref import InstanceRef

    with home_lock(state.home):  # the first opening creates and migrates the storage: one process at a time
        try:
            storage = InstanceRef.from_dir(str(state.home)).storage
        except Exception as exc:  # noqa: BLE001 - every cause is reported the same way, named
            raise InstanceError(describe_instance_error(state.home, exc)) from None
    return DagsterStorageReader(storage), state


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts else None


def _metadata_value(metadata, key):
    entry = metadata.get(key)
    return getattr(entry, "value", entry) if entry is not None else None


def latest_health(reader) -> dict | None:
    """Score, status, time, run and reasons of the latest health check, or None."""
    event = reader.latest_materialization(HEALTH_ASSET)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    reasons = _metadata_value(metadata, "reason_list")
    if not isinstance(reasons, list):  # recorded before the list was: the markdown bullets
        text = _metadata_value(metadata, "reasons") or ""
        reasons = [line[2:] for line in str(text).splitlines() if line.startswith("- ")]
    return {
        "score": _metadata_value(metadata, "health_score"),
        "status": _metadata_value(metadata, "health_status"),
        "checked_at": iso(event.timestamp),
        "run_id": event.run_id,
        "reasons": [str(reason) for reason in reasons],
    }


def run_trigger(tags) -> str:
    """How a run was started: the maintenance trigger tag, else schedule, sensor or the UI."""
    if tags.get(TRIGGER_TAG):
        return tags[TRIGGER_TAG]
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "sensor"
    return "ui/other"


def recent_runs(reader, limit: int, task: str | None = None) -> list[dict]:
    """The newest runs (of one task's runs when `task` is given), newest first."""
    rows = []
    for run in reader.runs(limit, (TASK_TAG, task) if task else None):
        duration = run.end_time - run.start_time if run.end_time and run.start_time else None
        rows.append(
            {
                "run_id": run.run_id,
                "job": run.job_name,
                "task": run.tags.get(TASK_TAG, ""),
                "status": run.status,
                "trigger": run_trigger(run.tags),
                "started": iso(run.start_time),
                "ended": iso(run.end_time),
                "duration_s": round(duration, 1) if duration is not None else None,
            }
        )
    return rows


def known_tasks(reader) -> set[str]:
    """Task names this instance knows: every task with a schedule, and every task that has runs."""
    from trading_maintenance.core.runs.schedule_table import SCHEDULE_TABLE

    return {row.task for row in SCHEDULE_TABLE} | reader.tag_values(TASK_TAG)


@dataclass
class InstigatorRow:
    name: str
    kind: str  # schedule / sensor
    task: str
    cron: str
    timezone: str
    status: str  # RUNNING / STOPPED
    next_tick: str
    description: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def effective_status(stored: str | None, code_default: str = CODE_DEFAULT_RUNNING) -> str:
    """RUNNING or STOPPED: what a person set in the UI or CLI wins; otherwise the code's default
    (a stored DECLARED_IN_CODE, or no stored state at all)."""
    if stored in ("RUNNING", "STOPPED"):
        return stored
    return code_default


def next_cron_tick(cron: str, tz: str, now: float) -> str:
    from dagster._utils.schedules import cron_string_iterator

    try:
        return next(cron_string_iterator(now, cron, tz)).isoformat()
    except Exception:  # noqa: BLE001 - an unreadable cron has no next tick to show
        return ""


def _sensor_next_tick(state, interval: int | None, now: float) -> str:
    last = getattr(state.instigator_data, "last_tick_timestamp", None) if state else None
    if not interval or not last:
        return ""  # never evaluated yet: the daemon evaluates it within its interval of starting
    return iso(max(now, last + interval)) or ""


def instigator_rows(reader, scheduling, now: float | None = None) -> list[InstigatorRow]:
    """Every declared schedule and sensor (the schedule table timed by `scheduling`, then
    DECLARED_OUTSIDE_TABLE) and any other instigator the instance holds a state for, with the state
    that really applies (RUNNING or STOPPED) and the next tick."""
    from trading_maintenance.core.runs.schedule_table import SCHEDULE_TABLE, cron_for

    now = time.time() if now is None else now
    tz = scheduling.timezone
    stored = {state.name: state for state in reader.instigator_states()}
    rows: list[InstigatorRow] = []
    for row in SCHEDULE_TABLE:
        state = stored.pop(row.name, None)
        status = effective_status(state.status.value if state else None)
        cron, _when = cron_for(row, scheduling)
        tick = next_cron_tick(cron, tz, now) if status == "RUNNING" else ""
        rows.append(InstigatorRow(row.name, "schedule", row.task, cron, tz, status, tick, row.description))
    for declared in DECLARED_OUTSIDE_TABLE:
        state = stored.pop(declared.name, None)
        status = effective_status(state.status.value if state else None)
        if declared.kind == "schedule":
            tick = next_cron_tick(declared.cron_or_interval, tz, now) if status == "RUNNING" else ""
            rows.append(InstigatorRow(declared.name, "schedule", "", declared.cron_or_interval, tz, status, tick, declared.description))
        else:
            interval = int(declared.cron_or_interval)
            tick = _sensor_next_tick(state, interval, now) if status == "RUNNING" else ""
            rows.append(InstigatorRow(declared.name, "sensor", "", f"every {interval}s", "", status, tick, declared.description))
    for name, state in sorted(stored.items()):  # declared nowhere any more, still held by the instance
        status = effective_status(state.status.value)
        data = state.instigator_data
        if state.instigator_type.value == "SCHEDULE":
            cron = getattr(data, "cron_schedule", "") or ""
            cron = cron if isinstance(cron, str) else " | ".join(cron)
            state_tz = getattr(data, "timezone", None) or tz
            tick = next_cron_tick(cron, state_tz, now) if status == "RUNNING" and cron else ""
            rows.append(InstigatorRow(name, "schedule", "", cron, state_tz, status, tick, ""))
            continue
        interval = getattr(data, "min_interval", None)
        tick = _sensor_next_tick(state, interval, now) if status == "RUNNING" else ""
        rows.append(InstigatorRow(name, "sensor", "", f"every {interval}s" if interval else "", "", status, tick, ""))
    return rows
