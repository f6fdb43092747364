"""Emergency maintenance: the job and the sensor that launches it when health falls low."""

import dagster as dg

from trading_maintenance.defs.emergency.jobs import emergency_maintenance_job
from trading_maintenance.defs.emergency.sensors import emergency_maintenance_sensor

defs = dg.Definitions(jobs=[emergency_maintenance_job], sensors=[emergency_maintenance_sensor])
