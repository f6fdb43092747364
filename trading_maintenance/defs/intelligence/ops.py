"""Intelligent maintenance: trends, anomalies, schedule advice and correlations over the recorded health checks and runs."""

import time

import dagster as dg

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.intelligence import trends
from trading_maintenance.core.intelligence.activity import recent_fills_per_hour
from trading_maintenance.core.intelligence.insights import LOAD_HISTORY_DAYS
from trading_maintenance.core.reports.generate import maintenance_insights
from trading_maintenance.core.reports.history import load_health, load_runs
from trading_maintenance.defs.common import markdown_table, publish_result
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource, TradingDatabaseResource

SERIES = ("health_score", "cpu_percent", "memory_percent", "disk_percent", "redis_used_memory_bytes")

INTELLIGENT_MAINTENANCE = MaintenanceTask(
    "intelligent_maintenance",
    "Trend and anomaly analysis: days until disk or memory limits, unusual health scores, tasks that keep failing, "
    "quiet hours for heavy tasks, and maintenance against health dips and trading activity.",
)
TASK = INTELLIGENT_MAINTENANCE.name


class IntelligentMaintenanceConfig(dg.Config):
    lookback_days: int = 14
    anomaly_threshold: float = 3.5
    forecast_horizon_days: float = 14.0


@dg.op(pool=INTELLIGENT_MAINTENANCE.pool, description="Find trends (days until disk or memory limits), anomalies in the health "
       "score, tasks that keep failing, the quietest hours for heavy tasks and schedules in busy hours, and how "
       "maintenance lines up with health dips and with trading.")
def analyse_maintenance_history(
    context: dg.OpExecutionContext,
    config: IntelligentMaintenanceConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    alerts: AlertsResource,
    trading_db: TradingDatabaseResource,
) -> dict:
    cfg = settings.get()
    now = time.time()
    since = now - config.lookback_days * 86400
    points = load_health(context.instance, since, now)
    runs = load_runs(context.instance, since, now, frozenset({context.run_id}), with_events=False)
    series = {name: [(p.timestamp, p.values[name]) for p in points if name in p.values] for name in SERIES}
    limits = {"disk_percent": cfg.maintenance.alerts.disk, "memory_percent": cfg.maintenance.alerts.memory, "cpu_percent": None,
              "health_score": None, "redis_used_memory_bytes": None}
    found_trends = [t for name, values in series.items() if (t := trends.linear_trend(name, values, limits.get(name)))]
    anomalies = [
        a for name in ("health_score", "disk_percent", "memory_percent") for a in trends.robust_anomalies(name, series[name], config.anomaly_threshold)
    ]
    rates = trends.failure_rates([(r.task, r.status == "SUCCESS") for r in runs if r.status in ("SUCCESS", "FAILURE") and not r.dry_run])
    fills, fills_note = recent_fills_per_hour(trading_db.get_engine, now, cfg.maintenance.scheduling.timezone, LOAD_HISTORY_DAYS)
    if fills_note:
        context.log.warning(fills_note)
    found = maintenance_insights(context.instance, cfg, runs, now, fills)
    advice = trends.recommendations(found_trends, anomalies, rates, config.forecast_horizon_days) + found["recommendations"]

    schedule = found["schedule_advice"]
    result = {
        "status": "success",
        "run_id": context.run_id,
        "lookback_days": config.lookback_days,
        "health_checks_analysed": len(series["health_score"]),
        "trends": [t.as_dict() for t in found_trends],
        "anomalies": [a.as_dict() for a in anomalies],
        "failure_rates": rates,
        "quiet_hours": schedule["quiet_hours"],
        "flagged_schedules": schedule["flagged"],
        "health_correlation": found["health_correlation"],
        "trading_activity": found["trading_activity"],
        "fills_read": not fills_note,
        "recommendations": advice,
    }
    client = redis.get_client()
    published = publish_result(client, TASK, result, context.log)
    # Critical forecasts stay active while the analysis still finds them and resolve when it no longer does.
    critical = [Alert(key=f"intelligence:{item['topic']}", severity="critical", title=f"Forecast: {item['topic']}",
                      message=item["message"], details={"action": item["action"]})
                for item in advice if item["severity"] == "critical"]
    alerts.sync("intelligence:", critical, client if published else None, "the analysis no longer finds it")
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
            "quiet_hours": dg.MetadataValue.md(markdown_table(schedule["quiet_hours"], ["hour", "load", "reason"])),
            "flagged_schedules": dg.MetadataValue.md(markdown_table(schedule["flagged"], ["task", "hour", "load", "heavy", "reason"])),
            "health_correlation": dg.MetadataValue.md(markdown_table(found["health_correlation"])),
            "trading_activity_correlation": dg.MetadataValue.float(found["trading_activity"]["correlation"])
            if found["trading_activity"]["correlation"] is not None else dg.MetadataValue.text("not enough data"),
            "fills_read": dg.MetadataValue.bool(not fills_note),
        }
    )
    return result


@INTELLIGENT_MAINTENANCE.op_job("intelligent_maintenance_job")
def intelligent_maintenance_job():
    analyse_maintenance_history()


intelligent_maintenance_schedule = INTELLIGENT_MAINTENANCE.schedule(intelligent_maintenance_job)
