from datetime import timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.tradenote import export as tn
from trading_maintenance.defs.common import TIMEZONE
from trading_maintenance.defs.tradenote.assets import day_fills, export_paths
from trading_maintenance.defs.tradenote.jobs import tradenote_export_job
from trading_maintenance.resources import MaintenanceSettingsResource, TradingDatabaseResource


def unexported_fills(engine, exports_dir, day, zone: str) -> int:
    """Fills of the day that its export file does not hold (they arrived after it was written)."""
    fills, _ = day_fills(engine, day, zone)
    path = export_paths(exports_dir, day)["csv"]
    exported = tn.exported_trade_ids(path.read_text()) if path.exists() else set()
    return sum(1 for fill in fills if fill.trade_id not in exported)


@dg.schedule(
    job=tradenote_export_job,
    cron_schedule="0 18 * * *",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="TradeNote export of the day's fills at 18:00 New York time, every calendar day (overnight and crypto "
    "fills happen on weekends and holidays too); the previous day again when fills arrived after its export.",
)
def tradenote_export_schedule(context: dg.ScheduleEvaluationContext, settings: MaintenanceSettingsResource,
                              trading_db: TradingDatabaseResource):
    cfg = settings.get()
    zone = cfg.trading.journal_timezone
    day = context.scheduled_execution_time.astimezone(ZoneInfo(zone)).date()
    requests = [dg.RunRequest(run_key=f"tradenote_export:{day.isoformat()}", partition_key=day.isoformat())]
    previous = day - timedelta(days=1)
    late = unexported_fills(trading_db.get_engine(), cfg.exports_dir, previous, zone)
    if late:
        context.log.info(f"{late} fills of {previous.isoformat()} are not in its export: exporting it again")
        requests.insert(0, dg.RunRequest(run_key=f"tradenote_export:{previous.isoformat()}:{late}-late",
                                         partition_key=previous.isoformat()))
    return requests
