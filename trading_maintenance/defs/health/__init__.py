"""System health: the check, its market-hours-aware schedule and the `system_health` record."""

import dagster as dg

from trading_maintenance.defs.health.jobs import system_health_check_job
from trading_maintenance.defs.health.ops import SYSTEM_HEALTH_ASSET
from trading_maintenance.defs.health.schedules import system_health_check_schedule

system_health = dg.AssetSpec(
    SYSTEM_HEALTH_ASSET,
    description="The platform's health score (0-100) and status, recorded by every health check; plots show the score over time.",
    group_name="health",
    kinds={"python"},
)

defs = dg.Definitions(
    assets=[system_health],
    jobs=[system_health_check_job],
    schedules=[system_health_check_schedule],
)
