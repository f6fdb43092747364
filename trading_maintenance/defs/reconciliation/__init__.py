"""Portfolio reconciliation: the broker, the database and Redis compared, Fridays and on demand."""

import dagster as dg

from trading_maintenance.defs.reconciliation.jobs import portfolio_reconciliation_job
from trading_maintenance.defs.reconciliation.schedules import portfolio_reconciliation_schedule

defs = dg.Definitions(jobs=[portfolio_reconciliation_job], schedules=[portfolio_reconciliation_schedule])
