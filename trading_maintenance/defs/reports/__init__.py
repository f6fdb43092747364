"""Daily maintenance reports: one JSON and one Markdown file per New York day."""

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.reports.report import render_markdown, summarise_day
from trading_maintenance.defs.common import TIMEZONE, atomic_write_text, job_tags
from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET
from trading_maintenance.resources import MaintenanceSettingsResource, RedisResource
from trading_maintenance.resources.alerts import ALERTS_LIST_KEY
from trading_maintenance.settings import get_settings

report_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().maintenance.scheduling.partitions_start_date, timezone=TIMEZONE, end_offset=1
)


def _day_window(day: str) -> tuple[float, float]:
    start = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(TIMEZONE))
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


@dg.asset(
    partitions_def=report_partitions,
    group_name="reports",
    kinds={"json", "markdown"},
    deps=[SYSTEM_HEALTH_ASSET],
    description="The day's maintenance report (New York day): every run, health score range, alerts, latest result per task.",
)
def maintenance_report(context: dg.AssetExecutionContext, settings: MaintenanceSettingsResource, redis: RedisResource) -> dg.MaterializeResult:
    cfg = settings.get()
    day = context.partition_key
    start, end = _day_window(day)
    records = context.instance.get_run_records(
        dg.RunsFilter(created_after=datetime.fromtimestamp(start, timezone.utc), created_before=datetime.fromtimestamp(end, timezone.utc)),
        limit=10000,
    )
    runs = [
        {
            "run_id": r.dagster_run.run_id,
            "job": r.dagster_run.job_name,
            "status": r.dagster_run.status.value,
            "started": datetime.fromtimestamp(r.start_time, timezone.utc).isoformat() if r.start_time else "",
            "seconds": round(r.end_time - r.start_time, 1) if r.start_time and r.end_time else None,
        }
        for r in records
        if r.dagster_run.run_id != context.run_id
    ]
    scores = []
    for record in context.instance.fetch_materializations(SYSTEM_HEALTH_ASSET, limit=5000, ascending=False).records:
        if record.timestamp < start:
            break
        if record.timestamp < end and record.asset_materialization and "health_score" in record.asset_materialization.metadata:
            scores.append(float(record.asset_materialization.metadata["health_score"].value))
    alerts, latest, redis_error = [], {}, ""
    try:
        client = redis.get_client()
        for raw in client.lrange(ALERTS_LIST_KEY, 0, -1):
            try:
                alert = json.loads(raw)
                stamp = datetime.fromisoformat(alert["created_at"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if start <= stamp < end:
                alerts.append(alert)
        for key in client.scan_iter(match="maintenance:result:*", count=200):
            try:
                latest[key.decode().split(":", 2)[2]] = {k: v for k, v in json.loads(client.get(key) or "{}").items() if k in ("status", "finished_at", "run_id", "score")}
            except (ValueError, AttributeError):
                continue
    except Exception as exc:  # noqa: BLE001 - the report still covers runs and health
        redis_error = f"{type(exc).__name__}"
        context.log.warning(f"Redis unavailable for the report's alerts section: {redis_error}")
    report = summarise_day(day, runs, scores, alerts, latest)
    report["redis_error"] = redis_error
    folder = cfg.reports_dir / "maintenance"
    json_path = atomic_write_text(folder / f"maintenance_report_{day}.json", json.dumps(report, indent=2, default=str))
    md_path = atomic_write_text(folder / f"maintenance_report_{day}.md", render_markdown(report))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(json_path)),
            "markdown_path": dg.MetadataValue.path(str(md_path)),
            "runs": len(runs),
            "failed_runs": len(report["runs"]["failed"]),
            "health_checks": len(scores),
            "alerts": len(alerts),
            "report": dg.MetadataValue.md(render_markdown(report)[:4000]),
        }
    )


@dg.asset_check(asset=maintenance_report, description="The report file parses and lists as many runs as the materialization counted.")
def maintenance_report_is_complete(context: dg.AssetCheckExecutionContext, settings: MaintenanceSettingsResource) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(maintenance_report.key)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=False, description="no report materialized yet")
    metadata = event.asset_materialization.metadata
    path = metadata["path"].value
    try:
        report = json.loads(open(path).read())
    except (OSError, ValueError) as exc:
        return dg.AssetCheckResult(passed=False, description=f"report unreadable: {type(exc).__name__}", metadata={"path": path})
    passed = report["runs"]["total"] == metadata["runs"].value
    return dg.AssetCheckResult(passed=passed, metadata={"path": path, "runs_in_file": report["runs"]["total"], "runs_counted": metadata["runs"].value})


maintenance_report_job = dg.define_asset_job(
    "maintenance_report_job",
    selection=[maintenance_report],
    description="Write the day's maintenance report (JSON and Markdown) under reports/maintenance/.",
    tags=job_tags("maintenance_report"),
)

maintenance_report_schedule = dg.build_schedule_from_partitioned_job(
    maintenance_report_job,
    name="maintenance_report_schedule",
    hour_of_day=0,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:30 ET: the report of the New York day that just ended.",
)

defs = dg.Definitions(
    assets=[maintenance_report],
    asset_checks=[maintenance_report_is_complete],
    jobs=[maintenance_report_job],
    schedules=[maintenance_report_schedule],
)
