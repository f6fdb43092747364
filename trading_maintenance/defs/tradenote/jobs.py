import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.tradenote.assets import tradenote_export
from trading_maintenance.defs.tradenote.partitions import journal_day_partitions

tradenote_export_job = dg.define_asset_job(
    "tradenote_export_job",
    selection=dg.AssetSelection.assets(tradenote_export),
    partitions_def=journal_day_partitions,
    description="TradeNote export of one calendar day (journal time zone): Template CSV, metrics, risk and package, P&L checked against the database.",
    tags=job_tags("tradenote_export"),
)
