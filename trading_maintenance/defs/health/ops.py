"""System health check: measure, score, publish to Redis, record `system_health`, alert; its job and
market-hours-aware schedule."""


from datetime import datetime, timedelta, timezone

import dagster as dg

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.health import scoring as health
from trading_maintenance.core.health.cadence import health_check_due
from trading_maintenance.defs.common import markdown_table, publish_result
from trading_maintenance.defs.health.collect import collect_health, failure_reason
from trading_maintenance.defs.market_data.assets import MARKET_DATA_DAILY
from trading_maintenance.defs.platform import REDIS_STATE, TRADING_DATABASE
from trading_maintenance.defs.task import OWNERS, MaintenanceTask
from trading_maintenance.resources import (
    AlertsResource,
    MaintenanceSettingsResource,
    PlatformServicesResource,
    RedisResource,
    SystemProbeResource,
    TradingDatabaseResource,
)

SYSTEM_HEALTH_ASSET = dg.AssetKey("system_health")


SYSTEM_HEALTH_CHECK = MaintenanceTask(
    "system_health_check",
    "System health check: a 0-100 score from host, Redis, database, services and market-data freshness.",
)
TASK = SYSTEM_HEALTH_CHECK.name


class HealthCheckConfig(dg.Config):
    send_alerts: bool = True


def alerts_for(report: health.HealthReport) -> list[Alert]:
    """One alert per non-green component; red is critical, yellow a warning."""
    alerts = []
    for component in report.components:
        if component.status in (health.RED, health.YELLOW) and component.reason:
            severity = "critical" if component.status == health.RED else "warning"
            alerts.append(
                Alert(
                    key=f"health:{component.name}",
                    severity=severity,
                    title=f"{component.name} is {component.status}",
                    message=component.reason,
                    details={"health_score": report.score, "status": report.status},
                )
            )
    return alerts


def _open_store(opener, known_secrets: list[str]):
    """(client or engine, "") or (None, why it cannot be opened): a store the settings describe
    wrongly is a red component of the health check, not a crashed check."""
    try:
        return opener(), ""
    except Exception as exc:  # noqa: BLE001 - reported as the component's reason
        return None, failure_reason(exc, known_secrets)


def run_health_check(
    context: dg.OpExecutionContext,
    config: HealthCheckConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
    platform_services: PlatformServicesResource,
    alerts: AlertsResource,
    task: str,
) -> tuple[dict, dict]:
    """Measure, score, publish to Redis and alert: (the published result, the metadata that records
    it on `system_health`)."""
    cfg = settings.get()
    now = datetime.now(timezone.utc)
    sample = system_probe.sample()
    service_results = platform_services.check_all()
    client, redis_open_error = _open_store(redis.get_client, cfg.secret_values())
    engine, database_open_error = _open_store(trading_db.get_engine, cfg.secret_values())
    report, extra = collect_health(
        cfg, sample, client, engine, service_results, now,
        redis_open_error=redis_open_error, database_open_error=database_open_error,
    )

    result = {
        "status": "success",
        "run_id": context.run_id,
        "checked_at": now.isoformat(),
        "score": report.score,
        "weighted_score": report.weighted_score,
        "health_status": report.status,
        "reasons": report.reasons,
        "components": [c.as_dict() for c in report.components],
        "system": sample.as_dict(),
        "services": [s.as_dict() for s in service_results],
        **extra,
    }
    published = client is not None and publish_result(client, task, result, context.log)

    dispatched, resolved = [], []
    if config.send_alerts:
        # One call: components still red or yellow alert (cooldown per key); active health alerts
        # whose component is green again leave maintenance:alerts and their resolution is sent.
        outcome = alerts.sync("health:", alerts_for(report), client if published else None, "the component is healthy again")
        for dispatch in outcome["sent"] + outcome["resolved"]:
            for channel in dispatch.failed_channels:
                context.log.warning(f"alert channel {channel} failed for {dispatch.alert_key}: {dispatch.channels[channel]}")
        dispatched = outcome["sent"]
        resolved = [dispatch.alert_key for dispatch in outcome["resolved"]]

    rows = [
        {"component": c.name, "status": c.status, "score": c.score, "value": "" if c.value is None else f"{c.value} {c.unit}", "reason": c.reason}
        for c in report.components
    ]
    metadata = {
        "health_score": dg.MetadataValue.float(report.score),
        "health_status": dg.MetadataValue.text(report.status),
        "cpu_percent": dg.MetadataValue.float(sample.cpu_percent),
        "memory_percent": dg.MetadataValue.float(sample.memory_percent),
        "memory_source": dg.MetadataValue.text(sample.memory_source),
        "cpu_source": dg.MetadataValue.text(sample.cpu_source),
        "disk_percent": dg.MetadataValue.float(sample.disk_percent),
        "swap_percent": dg.MetadataValue.float(sample.swap_percent),
        "load_1": dg.MetadataValue.float(round(sample.load_1, 2)),
        "redis_latency_ms": dg.MetadataValue.float(float(report.component("redis").value or -1)),
        "database_latency_ms": dg.MetadataValue.float(float(report.component("database").value or -1)),
        "redis_used_memory_bytes": dg.MetadataValue.int(int(extra.get("redis_used_memory_bytes") or 0)),
        "market_open": dg.MetadataValue.bool(bool(extra.get("market_open"))),
        "published_to_redis": dg.MetadataValue.bool(published),
        "alerts_sent": dg.MetadataValue.int(sum(1 for d in dispatched if d.sent)),
        "alerts_suppressed": dg.MetadataValue.int(sum(1 for d in dispatched if not d.sent)),
        "alerts_resolved": dg.MetadataValue.text(", ".join(resolved) or "none"),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report.reasons) or "all components green"),
        "components": dg.MetadataValue.md(markdown_table(rows)),
        # The same two as data, for readers other than the UI (the API, the dashboard).
        "reason_list": dg.MetadataValue.json(list(report.reasons)),
        "component_list": dg.MetadataValue.json([c.as_dict() for c in report.components]),
    }
    level = context.log.info if report.status == health.GREEN else context.log.warning
    level(f"health score {report.score} ({report.status})" + (": " + "; ".join(report.reasons) if report.reasons else ""))
    return result, metadata


@dg.multi_asset(
    name="check_system_health",
    deps=[REDIS_STATE, *TRADING_DATABASE, MARKET_DATA_DAILY],
    outs={
        # named "result": the op's output keeps the name every op's single output has
        "result": dg.AssetOut.from_spec(
            dg.AssetSpec(
                SYSTEM_HEALTH_ASSET,
                description="The platform's health score (0-100) and status: host CPU, memory, swap and disk, Redis, "
                "the trading database, the platform's services and how fresh the market data is. Every check records "
                "one materialization (plots show the score over time); a low score launches emergency maintenance. "
                "Stale means nobody is watching the platform: the health schedule or the daemon has stopped.",
                group_name="health",
                kinds={"python"},
                owners=OWNERS,
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2)),
            )
        )
    },
    pool=SYSTEM_HEALTH_CHECK.pool,
    description="Measure CPU, memory, swap, disk, load, Redis, the database, services and market data; score 0-100.",
)
def check_system_health(
    context: dg.AssetExecutionContext,
    config: HealthCheckConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
    platform_services: PlatformServicesResource,
    alerts: AlertsResource,
) -> dg.Output:
    result, metadata = run_health_check(context, config, settings, redis, trading_db, system_probe, platform_services, alerts, TASK)
    return dg.Output(result, output_name="result", metadata=metadata)


system_health_check_job = SYSTEM_HEALTH_CHECK.asset_job(
    "system_health_check_job", selection=dg.AssetSelection.assets(SYSTEM_HEALTH_ASSET)
)


def _health_check_due(context: dg.ScheduleEvaluationContext, settings: MaintenanceSettingsResource):
    scheduling = settings.get().maintenance.scheduling
    due, reason = health_check_due(
        context.scheduled_execution_time,
        scheduling.market_hours_check_minutes,
        scheduling.off_hours_check_minutes,
        scheduling.market_calendar,
        scheduling.timezone,
    )
    if not due:
        return dg.SkipReason(reason)
    return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat(), tags={"maintenance/cadence": reason})


system_health_check_schedule = SYSTEM_HEALTH_CHECK.schedule(system_health_check_job, _health_check_due)
