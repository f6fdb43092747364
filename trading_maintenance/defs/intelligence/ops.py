"""Intelligent maintenance: trends and anomalies over the recorded health checks and runs."""

import time
from datetime import datetime, timezone

import dagster as dg

from trading_maintenance.core.intelligence import trends
from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.defs.common import markdown_table, publish_result
from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource

SERIES = ("health_score", "cpu_percent", "memory_percent", "disk_percent", "redis_used_memory_bytes")

INTELLIGENT_MAINTENANCE = MaintenanceTask(
    "intelligent_maintenance",
    "Trend and anomaly analysis: days until disk or memory limits, unusual health scores, tasks that keep failing.",
)
TASK = INTELLIGENT_MAINTENANCE.name


class IntelligentMaintenanceConfig(dg.Config):
    lookback_days: int = 14
    anomaly_threshold: float = 3.5
    forecast_horizon_days: float = 14.0


def health_series(instance: dg.DagsterInstance, since: float, limit: int = 5000) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
    records = instance.fetch_materializations(SYSTEM_HEALTH_ASSET, limit=limit, ascending=False).records
    for record in records:
        if record.timestamp < since:
            break
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        for name in SERIES:
            if name in metadata and metadata[name].value is not None:
                series[name].append((record.timestamp, float(metadata[name].value)))
    return {name: sorted(points) for name, points in series.items()}


def task_outcomes(instance: dg.DagsterInstance, since: float) -> list[tuple[str, bool]]:
    records = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(since, timezone.utc),
        ),
        limit=5000,
    )
    return [
        (r.dagster_run.tags.get("maintenance/task", r.dagster_run.job_name), r.dagster_run.status == dg.DagsterRunStatus.SUCCESS)
        for r in records
    ]


@dg.op(pool=INTELLIGENT_MAINTENANCE.pool, description="Find trends (days until disk or memory limits), anomalies in the health score and tasks that keep failing.")
def analyse_maintenance_history(
    context: dg.OpExecutionContext,
    config: IntelligentMaintenanceConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    alerts: AlertsResource,
) -> dict:
    cfg = settings.get()
    since = time.time() - config.lookback_days * 86400
    series = health_series(context.instance, since)
    limits = {"disk_percent": cfg.maintenance.alerts.disk, "memory_percent": cfg.maintenance.alerts.memory, "cpu_percent": None,
              "health_score": None, "redis_used_memory_bytes": None}
    found_trends = [t for name, points in series.items() if (t := trends.linear_trend(name, points, limits.get(name)))]
    anomalies = [a for name in ("health_score", "disk_percent", "memory_percent") for a in trends.robust_anomalies(name, series[name], config.anomaly_threshold)]
    rates = trends.failure_rates(task_outcomes(context.instance, since))
    advice = trends.recommendations(found_trends, anomalies, rates, config.forecast_horizon_days)

    result = {
        "status": "success",
        "run_id": context.run_id,
        "lookback_days": config.lookback_days,
        "health_checks_analysed": len(series["health_score"]),
        "trends": [t.as_dict() for t in found_trends],
        "anomalies": [a.as_dict() for a in anomalies],
        "failure_rates": rates,
        "recommendations": advice,
    }
    client = redis.get_client()
    published = publish_result(client, TASK, result, context.log)
    for item in advice:
        if item["severity"] == "critical":
            alerts.send(Alert(key=f"intelligence:{item['topic']}", severity="critical", title=f"Forecast: {item['topic']}",
                              message=item["message"], details={"action": item["action"]}), client if published else None)
    if not series["health_score"]:
        context.log.warning("no health checks recorded in the lookback window: nothing to analyse yet")
    context.add_output_metadata(
        {
            "health_checks_analysed": len(series["health_score"]),
            "anomalies_found": len(anomalies),
            "recommendations_count": len(advice),
            "critical_recommendations": sum(1 for a in advice if a["severity"] == "critical"),
            "recommendations": dg.MetadataValue.md(markdown_table(advice, ["severity", "topic", "message", "action"])),
            "trends": dg.MetadataValue.md(markdown_table([t.as_dict() for t in found_trends])),
            "failure_rates": dg.MetadataValue.md(markdown_table([{"task": k, **v} for k, v in sorted(rates.items())])),
        }
    )
    return result


@INTELLIGENT_MAINTENANCE.op_job("intelligent_maintenance_job")
def intelligent_maintenance_job():
    analyse_maintenance_history()


intelligent_maintenance_schedule = INTELLIGENT_MAINTENANCE.schedule(intelligent_maintenance_job)
