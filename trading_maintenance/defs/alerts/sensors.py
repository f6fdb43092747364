"""Alerts for every maintenance run that fails or is canceled, resolutions when the task next
succeeds (its failure and the alerts its earlier runs raised), and degradation warnings (a task
50 % slower than its 7-day median, a health metric 50 % worse than its median)."""

from __future__ import annotations

import time
from datetime import datetime

import dagster as dg

from trading_maintenance.core.common.alerts import Alert, run_failure_alert
from trading_maintenance.core.intelligence.analysis import duration_degradations, health_degradations
from trading_maintenance.core.reports.history import TASK_TAG, describe_failure, load_health, load_runs
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource

DEGRADATION_WINDOW_DAYS = 7


def _redis_or_none(redis: RedisResource, log):
    try:
        client = redis.get_client()
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - alerts still go out without the active list
        log.warning(f"Redis unavailable for the active alerts list: {type(exc).__name__}")
        return None


def alert_run_outcome(context: dg.RunStatusSensorContext, alerts: AlertsResource, settings: MaintenanceSettingsResource,
                      redis: RedisResource) -> str:
    run = context.dagster_run
    task = run.tags.get(TASK_TAG, run.job_name)
    status = run.status.value
    error, _ = describe_failure(context.instance, run.run_id, status)
    alert = run_failure_alert(task, run.run_id, status, error, settings.get().notifications.ui_base_url)
    dispatch = alerts.send(alert, _redis_or_none(redis, context.log))
    return f"{alert.title}: sent={dispatch.sent} channels={dispatch.channels}"


@dg.run_failure_sensor(
    name="maintenance_run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed maintenance run of this code location alerts once: task, run id, first error line, link to the run.",
)
def maintenance_run_failure_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource,
                                   settings: MaintenanceSettingsResource, redis: RedisResource):
    context.log.info(alert_run_outcome(context, alerts, settings, redis))


@dg.run_status_sensor(
    name="maintenance_run_canceled_sensor",
    run_status=dg.DagsterRunStatus.CANCELED,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every canceled maintenance run alerts once, like a failure.",
)
def maintenance_run_canceled_sensor(context: dg.RunStatusSensorContext, alerts: AlertsResource,
                                    settings: MaintenanceSettingsResource, redis: RedisResource):
    context.log.info(alert_run_outcome(context, alerts, settings, redis))


def raised_by_task_before(active: list[dict], task: str, started: float) -> list[str]:
    """Keys of the active alerts about `task` (its failure, or alerts its runs raised with
    details.task) last raised before its successful run started: a success clears them, while an
    alert the run itself raised (or refreshed) stays."""
    keys = []
    for entry in active:
        details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
        if entry.get("key") != f"task_failed:{task}" and details.get("task") != task:
            continue
        try:
            raised = datetime.fromisoformat(entry.get("created_at", "")).timestamp()
        except (TypeError, ValueError):
            raised = float("-inf")
        if raised < started:
            keys.append(entry["key"])
    return keys


@dg.run_status_sensor(
    name="maintenance_run_success_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A task that succeeds resolves its failure alert and the alerts its earlier runs raised; completed "
                "maintenance is an info notice.",
)
def maintenance_run_success_sensor(context: dg.RunStatusSensorContext, alerts: AlertsResource, redis: RedisResource):
    run = context.dagster_run
    task = run.tags.get(TASK_TAG, run.job_name)
    client = _redis_or_none(redis, context.log)
    if client is not None:
        record = context.instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record and record.start_time else time.time()
        for key in raised_by_task_before(alerts.active(client), task, started):
            alerts.resolve(key, client, f"{task} succeeded again in run {run.run_id[:8]}")
    if task != "system_health_check":
        alerts.send(Alert(key=f"completed:{task}:{run.run_id}", severity="info", title=f"{task} completed",
                          message=f"{task} run {run.run_id[:8]} completed", details={"task": task, "run_id": run.run_id}), client)


@dg.sensor(
    name="maintenance_degradation_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Warns when a task runs 50 % longer than its 7-day median or a health metric is 50 % worse than its median; "
                "resolves the warning when it clears.",
)
def maintenance_degradation_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource, redis: RedisResource):
    now = time.time()
    since = now - DEGRADATION_WINDOW_DAYS * 86400
    found = duration_degradations(load_runs(context.instance, since, now, with_events=False), now, DEGRADATION_WINDOW_DAYS)
    found += health_degradations(load_health(context.instance, since, now))
    firing = [Alert(key=d.key, severity="warning", title=f"Performance degradation: {d.subject}", message=d.message,
                    details={"latest": d.latest, "median": d.median, "change_percent": d.change_percent}) for d in found]
    outcome = alerts.sync("degradation:", firing, _redis_or_none(redis, context.log), "back within 50 % of its median")
    resolved = [d.alert_key for d in outcome["resolved"]]
    summary = "; ".join(d.message for d in found) or "no degradation"
    return dg.SkipReason(f"{summary}" + (f"; resolved: {', '.join(resolved)}" if resolved else ""))
