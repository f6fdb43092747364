"""Reading the instance for `status`, `maintenance history` and `maintenance schedule`.

These commands only read Dagster's storage, so they open the storage alone: no code location
(trading_maintenance.definitions and its pandas, polars, pyarrow, exchange-calendars imports) and
no full DagsterInstance (run launcher, run coordinator, compute logs). The declared schedules come
from the schedule table (defs/schedule_table.py), which is data; the few instigators declared
outside it are listed in DECLARED_OUTSIDE_TABLE, which a test keeps equal to the definitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

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
)


def open_storage():
    """(the instance's DagsterStorage, HomeState), created and migrated by one process at a time
    like `instance.open_instance`; any failure is an InstanceError naming DAGSTER_HOME."""
    from dagster._core.instance.ref import InstanceRef

    state: HomeState = prepare_home()
    with home_lock(state.home):
        try:
            storage = InstanceRef.from_dir(str(state.home)).storage
        except Exception as exc:  # noqa: BLE001 - every cause is reported the same way, named
            raise InstanceError(describe_instance_error(state.home, exc)) from None
    return storage, state


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts else None


def _metadata_value(metadata, key):
    entry = metadata.get(key)
    return getattr(entry, "value", entry) if entry is not None else None


def latest_health(storage) -> dict | None:
    """Score, status, time, run and reasons of the latest health check, or None."""
    from dagster import AssetKey

    key = AssetKey(HEALTH_ASSET)
    event = storage.event_log_storage.get_latest_materialization_events([key]).get(key)
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


def _trigger(tags) -> str:
    if tags.get(TRIGGER_TAG):
        return tags[TRIGGER_TAG]
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "sensor"
    return "ui/other"


def recent_runs(storage, limit: int, task: str | None = None) -> list[dict]:
    """The newest runs (of one task's runs when `task` is given), newest first."""
    from dagster import RunsFilter

    filters = RunsFilter(tags={TASK_TAG: task}) if task else RunsFilter()
    rows = []
    for record in storage.run_storage.get_run_records(filters=filters, limit=limit):
        run = record.dagster_run
        duration = record.end_time - record.start_time if record.end_time and record.start_time else None
        rows.append(
            {
                "run_id": run.run_id,
                "job": run.job_name,
                "task": run.tags.get(TASK_TAG, ""),
                "status": run.status.value,
                "trigger": _trigger(run.tags),
                "started": iso(record.start_time),
                "ended": iso(record.end_time),
                "duration_s": round(duration, 1) if duration is not None else None,
            }
        )
    return rows


def known_tasks(storage) -> set[str]:
    """Task names this instance knows: every task with a schedule, and every task that has runs."""
    from trading_maintenance.defs.schedule_table import SCHEDULE_TABLE

    names = {row.task for row in SCHEDULE_TABLE}
    for key, values in storage.run_storage.get_run_tags(tag_keys=[TASK_TAG]):
        if key == TASK_TAG:
            names |= set(values)
    return names


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


def instigator_rows(storage, scheduling, now: float | None = None) -> list[InstigatorRow]:
    """Every declared schedule and sensor (the schedule table timed by `scheduling`, then
    DECLARED_OUTSIDE_TABLE) and any other instigator the instance holds a state for, with the state
    that really applies (RUNNING or STOPPED) and the next tick."""
    from trading_maintenance.defs.schedule_table import SCHEDULE_TABLE, cron_for

    now = time.time() if now is None else now
    tz = scheduling.timezone
    stored = {state.name: state for state in storage.schedule_storage.all_instigator_state()}
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
