"""The cheap probe every minute, at any hour: its reading feeds the emergency sensor, and a component
that changes state starts a full health check at once instead of at the next hourly one."""

import json
import time

import dagster as dg
from sqlalchemy import text

from trading_maintenance.core.health import probe
from trading_maintenance.core.health import scoring as health
from trading_maintenance.defs.health.collect import failure_reason, record_and_read_samples
from trading_maintenance.defs.health.ops import system_health_check_job
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
    SystemProbeResource,
    TradingDatabaseResource,
)
from trading_maintenance.resources.redis import redis_client

PLATFORM_PROBE_ASSET = dg.AssetKey("platform_probe")
PROBE_TRIGGER = "probe_sensor"


def _probe_cursor(cursor: str | None) -> dict:
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def measure_platform(settings: MaintenanceSettingsResource, redis: RedisResource, trading_db: TradingDatabaseResource,
                     system_probe: SystemProbeResource, now: float) -> tuple[health.HealthReport, probe.ProbeMeasurement]:
    cfg = settings.get()
    secrets = cfg.secret_values()
    # A client of its own with the probe's deadline as timeout: the runs' clients wait 5 s per command.
    client_holder = {}

    def ping_redis() -> None:
        client = redis_client(redis.url, redis.data_dir, max_connections=2, timeout=probe.PROBE_DEADLINE_SECONDS)
        client.ping()
        client_holder["client"] = client

    def select_one() -> None:
        with trading_db.get_engine().connect() as conn:
            conn.execute(text("SELECT 1")).scalar()

    answers = probe.ask_stores({"redis": ping_redis, "database": select_one},
                               describe_error=lambda exc: failure_reason(exc, secrets))
    memory_percent, memory_source = probe.measure_memory(system_probe.cgroup_root, system_probe.proc_cgroup)
    disk_path, disk_percent = probe.measure_disk(system_probe.data_dir)
    measurement = probe.ProbeMeasurement(memory_percent, memory_source, disk_path, disk_percent, answers["redis"], answers["database"])

    thresholds = cfg.maintenance.alerts
    memory_sustained = False
    if answers["redis"].reachable and "client" in client_holder:
        try:  # the probe's memory samples join the full check's, so "sustained" is judged on both
            samples = record_and_read_samples(client_holder["client"], "memory", memory_percent, now)
            memory_sustained = health.is_sustained(samples, thresholds.memory, thresholds.sustained_minutes * 60, now)
        except Exception:  # noqa: BLE001 - without samples memory counts as not sustained, as in the full check
            memory_sustained = False
    report = probe.score_probe(measurement, thresholds.memory, thresholds.disk, memory_sustained, thresholds.sustained_minutes)
    return report, measurement


@dg.sensor(
    job=system_health_check_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute at any hour, under a second: Redis, the database, disk and memory. Its reading feeds "
    "the emergency sensor; a component that changes state starts a full health check.",
)
def platform_probe_sensor(
    context: dg.SensorEvaluationContext,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    system_probe: SystemProbeResource,
):
    now = time.time()
    state = _probe_cursor(context.cursor)
    report, measurement = measure_platform(settings, redis, trading_db, system_probe, now)
    statuses = probe.component_statuses(report)
    changed = probe.changed_components(state.get("statuses") or {}, statuses)
    request_now, pending = probe.full_check_due(changed, bool(state.get("pending")), state.get("last_requested_at"), now)
    observation = dg.AssetObservation(
        asset_key=PLATFORM_PROBE_ASSET,
        description=f"probe {report.score:g} ({report.status})",
        metadata={
            "health_score": dg.MetadataValue.float(report.score),
            "health_status": dg.MetadataValue.text(report.status),
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report.reasons) or "all components green"),
            "memory_percent": dg.MetadataValue.float(measurement.memory_percent),
            "memory_source": dg.MetadataValue.text(measurement.memory_source),
            "disk_percent": dg.MetadataValue.float(measurement.disk_percent),
            "redis_latency_ms": dg.MetadataValue.float(measurement.redis.latency_ms if measurement.redis.reachable else -1.0),
            "database_latency_ms": dg.MetadataValue.float(measurement.database.latency_ms if measurement.database.reachable else -1.0),
            "changed": dg.MetadataValue.text(", ".join(changed) or "none"),
        },
    )
    cursor = json.dumps({
        "statuses": statuses,
        "pending": pending,
        "last_requested_at": now if request_now else state.get("last_requested_at"),
    }, sort_keys=True)
    run_requests = []
    if request_now:
        run_requests.append(dg.RunRequest(
            run_key=f"probe-{int(now)}",
            tags={"maintenance/trigger": PROBE_TRIGGER, "maintenance/probe_changed": (", ".join(changed) or "pending change")[:200]},
        ))
    skip_reason = None if run_requests else dg.SkipReason(
        f"probe {report.score:g} ({report.status}); " + ("full check waits for the 5-minute gap" if pending else "no component changed state")
    )
    return dg.SensorResult(run_requests=run_requests, asset_events=[observation], cursor=cursor, skip_reason=skip_reason)
