import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.reconciliation.ops import reconcile_portfolio


@dg.job(
    description="Portfolio reconciliation: broker (Alpaca) vs database vs Redis positions, cash, orders and fills. Read-only at the broker.",
    tags=job_tags("portfolio_reconciliation"),
)
def portfolio_reconciliation_job():
    reconcile_portfolio()
