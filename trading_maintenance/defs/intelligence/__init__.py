"""Intelligent maintenance: trend and anomaly analysis over health checks and run history."""

import dagster as dg

from trading_maintenance.defs.common import TIMEZONE, job_tags
from trading_maintenance.defs.intelligence.ops import analyse_maintenance_history


@dg.job(
    description="Trend and anomaly analysis: days until disk or memory limits, unusual health scores, tasks that keep failing.",
    tags=job_tags("intelligent_maintenance"),
)
def intelligent_maintenance_job():
    analyse_maintenance_history()


intelligent_maintenance_schedule = dg.ScheduleDefinition(
    name="intelligent_maintenance_schedule",
    job=intelligent_maintenance_job,
    cron_schedule="0 6 * * *",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily 06:00 ET, before the open: forecasts and anomalies from the last two weeks of health checks and runs.",
)

defs = dg.Definitions(jobs=[intelligent_maintenance_job], schedules=[intelligent_maintenance_schedule])
