import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.market_data.assets import MARKET_DATA_CLEANUP, MARKET_DATA_MONTHLY
from trading_maintenance.defs.market_data.partitions import market_data_monthly_partitions

market_data_monthly_job = dg.define_asset_job(
    "market_data_monthly_job",
    selection=dg.AssetSelection.assets(MARKET_DATA_MONTHLY, MARKET_DATA_CLEANUP),
    partitions_def=market_data_monthly_partitions,
    description=(
        "Trading data maintenance: consolidate a month of daily market-data files into verified zstd archives, "
        "then delete daily files past retention that a verified archive covers (only if the blocking check passed)."
    ),
    tags=job_tags("trading_data_maintenance"),
)
