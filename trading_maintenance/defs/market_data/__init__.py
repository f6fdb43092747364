"""Market data as assets: the collector's daily files (external), monthly archives, and the cleanup
of daily files that a verified archive covers."""

import dagster as dg

from trading_maintenance.defs.market_data.assets import market_data_daily, market_data_daily_cleanup, market_data_monthly
from trading_maintenance.defs.market_data.jobs import market_data_monthly_job
from trading_maintenance.defs.market_data.schedules import market_data_monthly_schedule

defs = dg.Definitions(
    assets=[market_data_daily, market_data_monthly, market_data_daily_cleanup],
    jobs=[market_data_monthly_job],
    schedules=[market_data_monthly_schedule],
)
