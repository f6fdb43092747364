
import json
import time

import dagster as dg

from trading_maintenance.core.emergency.decision import HealthReading, decide, parse_state
from trading_maintenance.defs.emergency.jobs import emergency_maintenance_job
from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET
from trading_maintenance.resources import MaintenanceSettingsResource


def latest_health_reading(instance: dg.DagsterInstance) -> HealthReading | None:
    records = instance.fetch_materializations(SYSTEM_HEALTH_ASSET, limit=1, ascending=False).records
    if not records:
        return None
    record = records[0]
    materialization = record.asset_materialization
    score = materialization.metadata.get("health_score") if materialization else None
    if score is None:
        return None
    return HealthReading(float(score.value), record.timestamp, record.storage_id)


@dg.sensor(
    job=emergency_maintenance_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches emergency maintenance once per incident when the latest health score falls below the threshold (cooldown between relaunches).",
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
