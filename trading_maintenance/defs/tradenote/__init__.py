"""TradeNote exports: one Template CSV per NYSE trading day, checked against the database's P&L."""

import dagster as dg

from trading_maintenance.defs.tradenote.assets import tradenote_export, tradenote_pnl_matches_database
from trading_maintenance.defs.tradenote.jobs import tradenote_export_job
from trading_maintenance.defs.tradenote.schedules import tradenote_export_schedule

defs = dg.Definitions(
    assets=[tradenote_export],
    asset_checks=[tradenote_pnl_matches_database],
    jobs=[tradenote_export_job],
    schedules=[tradenote_export_schedule],
)
