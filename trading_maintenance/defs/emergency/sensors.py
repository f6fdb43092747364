
import json
import time

import dagster as dg

from trading_maintenance.core.emergency.decision import FULL_CHECK, PROBE, HealthReading, decide, effective_reading, parse_state
from trading_maintenance.defs.emergency.ops import emergency_maintenance_job
from trading_maintenance.defs.emergency.probe_sensor import PLATFORM_PROBE_ASSET
from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET
from trading_maintenance.resources import MaintenanceSettingsResource


def _reading(record, event, source: str) -> HealthReading | None:
    metadata = event.metadata if event else {}
    score = metadata.get("health_score")
    if score is None:
        return None
    status = metadata.get("health_status")
    reasons = metadata.get("reasons")
    listed = tuple(line[2:].strip() for line in str(reasons.value if reasons else "").splitlines() if line.startswith("- "))
    return HealthReading(float(score.value), record.timestamp, record.storage_id,
                         str(status.value) if status else "", listed, source)


def latest_health_reading(instance: dg.DagsterInstance) -> HealthReading | None:
    """The newest full health check, lowered by a newer probe that found worse."""
    checks = instance.fetch_materializations(SYSTEM_HEALTH_ASSET, limit=1, ascending=False).records
    probes = instance.fetch_observations(PLATFORM_PROBE_ASSET, limit=1, ascending=False).records
    full_check = _reading(checks[0], checks[0].asset_materialization, FULL_CHECK) if checks else None
    latest_probe = _reading(probes[0], probes[0].asset_observation, PROBE) if probes else None
    return effective_reading(full_check, latest_probe)


@dg.sensor(
    job=emergency_maintenance_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches emergency maintenance once per incident when the latest health score (full check or the "
    "minute probe) falls below the threshold (cooldown between relaunches).",
)
def emergency_maintenance_sensor(context: dg.SensorEvaluationContext, settings: MaintenanceSettingsResource):
    scheduling = settings.get().maintenance.scheduling
    reading = latest_health_reading(context.instance)
    decision = decide(
        reading,
        scheduling.emergency_health_threshold,
        scheduling.emergency_cooldown_minutes * 60,
        parse_state(context.cursor),
        time.time(),
    )
    cursor = json.dumps(decision.state, sort_keys=True)
    if not decision.launch:
        return dg.SensorResult(skip_reason=dg.SkipReason(decision.reason), cursor=cursor)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=decision.run_key,
                tags={"maintenance/trigger": "emergency_sensor", "maintenance/health_score": f"{reading.score:g}"},
            )
        ],
        cursor=cursor,
    )
