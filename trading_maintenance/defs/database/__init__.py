"""Database maintenance: vacuum, analyze, reindex and purge of the trading database, weekly."""

import dagster as dg

from trading_maintenance.defs.database.jobs import database_maintenance_job
from trading_maintenance.defs.database.schedules import database_maintenance_schedule

defs = dg.Definitions(jobs=[database_maintenance_job], schedules=[database_maintenance_schedule])
