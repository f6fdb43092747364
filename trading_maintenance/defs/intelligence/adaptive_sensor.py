"""The adaptive maintenance sensor: acts on the analysis, one run per finding, and orders the run queue.

Disk predicted full within 24 h launches data_cleanup; Redis fragmented or near its maxmemory
launches cache_cleanup; a heavy task (backup, database maintenance) whose latest run failed is
retried once, never while NYSE is open. Queued maintenance runs get a `dagster/priority` that
follows the same findings (cleanup before backup while disk is short). Every decision is the
tick's reason.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import dagster as dg

from trading_maintenance.core.common.market_hours import is_market_open
from trading_maintenance.core.intelligence import adaptive
from trading_maintenance.core.intelligence.trends import linear_trend
from trading_maintenance.core.reports.history import TASK_TAG, load_health
from trading_maintenance.defs.backups.assets import backup_archive_job
from trading_maintenance.defs.database.ops import database_maintenance_job
from trading_maintenance.defs.hygiene.cache_cleanup import cache_cleanup_job
from trading_maintenance.defs.hygiene.data_cleanup import data_cleanup_job
from trading_maintenance.resources import RedisResource

PRIORITY_TAG = "dagster/priority"
DISK_TREND_HOURS = 48
COOLDOWN_SECONDS = 3600
JOBS = {"data_cleanup": data_cleanup_job, "cache_cleanup": cache_cleanup_job, "backup": backup_archive_job,
        "database_maintenance": database_maintenance_job}
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def current_time() -> float:
    return time.time()


def _redis_info(redis: RedisResource) -> tuple[dict | None, str]:
    try:
        return redis.get_client().info("memory"), ""
    except Exception as exc:  # noqa: BLE001 - Redis down is the health check's finding, not this sensor's
        return None, f"Redis not read ({type(exc).__name__})"


def _latest_heavy_outcomes(instance: dg.DagsterInstance) -> dict[str, tuple[str, str]]:
    outcomes = {}
    for task in ("backup", "database_maintenance"):
        records = instance.get_run_records(
            dg.RunsFilter(job_name=JOBS[task].name, statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), limit=1
        )
        if records:
            outcomes[task] = (records[0].dagster_run.status.value, records[0].dagster_run.run_id)
    return outcomes


def reprioritise_queue(instance: dg.DagsterInstance, findings: list[adaptive.Finding], market_open: bool) -> list[str]:
    """Give every queued maintenance run the priority the analysis asks for; what changed."""
    changed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=500):
        run = record.dagster_run
        task = run.tags.get(TASK_TAG)
        if not task:
            continue
        wanted = str(adaptive.priority(task, findings, market_open))
        if run.tags.get(PRIORITY_TAG) != wanted:
            instance.add_run_tags(run.run_id, {PRIORITY_TAG: wanted})
            changed.append(f"{task} {run.run_id[:8]} priority {wanted}")
    return changed


@dg.sensor(
    name="adaptive_maintenance_sensor",
    jobs=list(JOBS.values()),
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Acts on the analysis: data_cleanup when disk is predicted full within 24 h, cache_cleanup when Redis is "
                "fragmented or near maxmemory, one retry of a failed heavy task outside market hours; orders the run queue.",
)
def adaptive_maintenance_sensor(context: dg.SensorEvaluationContext, redis: RedisResource):
    now = current_time()
    market_open = is_market_open(datetime.fromtimestamp(now, timezone.utc))
    points = load_health(context.instance, now - DISK_TREND_HOURS * 3600, now + 1)
    disk = linear_trend("disk_percent", [(p.timestamp, p.values["disk_percent"]) for p in points if "disk_percent" in p.values])
    info, redis_note = _redis_info(redis)
    findings = [f for f in (adaptive.disk_finding(disk), adaptive.redis_finding(info)) if f]
    findings += adaptive.failed_heavy_findings(_latest_heavy_outcomes(context.instance))

    busy = {task for task, job in JOBS.items()
            if context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=ACTIVE), limit=1)}
    try:
        last_launch = {k: float(v) for k, v in json.loads(context.cursor or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        last_launch = {}
    decisions = adaptive.decide(findings, market_open, busy, last_launch, now, COOLDOWN_SECONDS)
    requests = []
    for decision in decisions:
        if decision.launch:
            last_launch[decision.finding.name] = now
            requests.append(dg.RunRequest(
                run_key=decision.run_key, job_name=JOBS[decision.finding.task].name,
                tags={"maintenance/trigger": "adaptive_sensor", "maintenance/reason": decision.reason[:250],
                      PRIORITY_TAG: str(adaptive.priority(decision.finding.task, findings, market_open))},
            ))
    reasons = [d.reason for d in decisions] + reprioritise_queue(context.instance, findings, market_open)
    if redis_note:
        reasons.append(redis_note)
    if not findings:
        reasons.insert(0, f"nothing to do (disk trend: {disk.slope_per_day:+.2f}/day at {disk.latest:g}%)" if disk
                       else "nothing to do (fewer than 4 health checks in 48 h for a disk trend)")
    reason = "; ".join(reasons)
    for line in reasons:
        context.log.info(line)
    cursor = json.dumps(last_launch, sort_keys=True)
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)
