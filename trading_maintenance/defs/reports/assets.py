"""Daily and weekly maintenance reports: HTML, JSON and CSV under reports/maintenance/{daily,weekly}/.

Both read Dagster's run and event storage and the `system_health` history through
`core.reports.generate`; the daily one also sends the day's summary (email and Slack).
"""

from datetime import date
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.common.market_hours import is_trading_day
from trading_maintenance.core.intelligence.activity import recent_fills_per_hour
from trading_maintenance.core.intelligence.insights import LOAD_HISTORY_DAYS
from trading_maintenance.core.reports.generate import FORMATS, build, write
from trading_maintenance.defs.task import OWNERS, MaintenanceTask, maintenance_timezone, partitions_start
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, TradingDatabaseResource

SYSTEM_HEALTH = dg.AssetKey("system_health")
WEEKLY_REPORT_HOUR = 6  # Sunday morning: the week before

MAINTENANCE_REPORT_DAILY = MaintenanceTask(
    "maintenance_report_daily", "Write the trading day's maintenance report and send the daily summary.", in_run_all=False
)
MAINTENANCE_REPORT_WEEKLY = MaintenanceTask(
    "maintenance_report_weekly", "Write the week's maintenance report.", in_run_all=False
)

daily_report_partitions = dg.DailyPartitionsDefinition(
    start_date=partitions_start(), timezone=maintenance_timezone(), end_offset=1
)
weekly_report_partitions = dg.WeeklyPartitionsDefinition(
    start_date=partitions_start(), timezone=maintenance_timezone(), day_offset=0, hour_offset=WEEKLY_REPORT_HOUR,
)


def _summary_text(report: dict, paths: dict[str, str]) -> str:
    totals = report["totals"]
    lines = [
        f"{totals['runs']} runs: {totals['succeeded']} succeeded, {totals['failed']} failed, {totals['canceled']} canceled "
        f"({totals['dry_runs']} dry runs apart); {totals['bytes_freed']:,} bytes freed, {totals['files_processed']} files processed.",
    ]
    for failure in report.get("failures", [])[:10]:
        lines.append(f"- {failure['task']} {failure['status']}: {failure['error']}")
    for item in report.get("recommendations", [])[:10]:
        lines.append(f"- [{item['severity']}] {item['message']} -> {item['action']}")
    lines.append(f"Report: {paths['html']}")
    return "\n".join(lines)


def _write_all(report: dict, settings) -> dict[str, str]:
    return {fmt: str(write(report, settings.reports_dir, fmt, settings.notifications.ui_base_url)) for fmt in FORMATS}


def _metadata(report: dict, paths: dict[str, str]) -> dict:
    totals = report["totals"]
    rows = ["| task | runs | succeeded | failed | dry runs |", "|---|---|---|---|---|"]
    rows += [f"| {t['task']} | {t['runs']} | {t['succeeded']} | {t['failed']} | {t['dry_runs']} |" for t in report["tasks"][:50]]
    return {
        "path": dg.MetadataValue.path(paths["html"]),
        "json_path": dg.MetadataValue.path(paths["json"]),
        "csv_path": dg.MetadataValue.path(paths["csv"]),
        "runs": totals["runs"],
        "failed_runs": totals["failed"],
        "dry_runs": totals["dry_runs"],
        "bytes_freed": totals["bytes_freed"],
        "recommendations": len(report.get("recommendations", [])),
        "tasks": dg.MetadataValue.md("\n".join(rows)),
    }


def _report_for_partition(context: dg.AssetExecutionContext, report_type: str, label: str, settings,
                          trading_db: TradingDatabaseResource) -> dict:
    window = context.partition_time_window
    end = window.end.timestamp()
    fills, note = recent_fills_per_hour(trading_db.get_engine, end, settings.maintenance.scheduling.timezone,
                                        LOAD_HISTORY_DAYS)
    if note:
        context.log.warning(note)
    return build(context.instance, report_type, window.start.timestamp(), end, label, settings, None,
                 frozenset({context.run_id}), fills)


@dg.asset(
    partitions_def=daily_report_partitions,
    group_name="reports",
    kinds={"html", "json", "csv"},
    deps=[SYSTEM_HEALTH],
    owners=OWNERS,
    pool=MAINTENANCE_REPORT_DAILY.pool,
    description="The trading day's maintenance report (HTML, JSON, CSV) from run storage and health history; "
                "sends the daily summary by email and Slack.",
)
def maintenance_report_daily(context: dg.AssetExecutionContext, settings: MaintenanceSettingsResource,
                             alerts: AlertsResource, trading_db: TradingDatabaseResource) -> dg.MaterializeResult:
    cfg = settings.get()
    day = context.partition_key
    report = _report_for_partition(context, "daily", day, cfg, trading_db)
    paths = _write_all(report, cfg)
    with open(paths["html"], encoding="utf-8") as handle:
        html = handle.read()
    dispatch = alerts.send_summary(day, f"Maintenance report {day}", _summary_text(report, paths), html)
    for channel in dispatch.failed_channels:
        context.log.warning(f"daily summary via {channel} failed: {dispatch.channels[channel]}")
    return dg.MaterializeResult(metadata={**_metadata(report, paths), "summary_sent": dispatch.sent})


@dg.asset(
    partitions_def=weekly_report_partitions,
    group_name="reports",
    kinds={"html", "json", "csv"},
    deps=[SYSTEM_HEALTH],
    owners=OWNERS,
    pool=MAINTENANCE_REPORT_WEEKLY.pool,
    description="The week's maintenance report: efficiency (bytes freed per maintenance minute), health trends, "
                "a task effectiveness ranking, failures and recommendations.",
)
def maintenance_report_weekly(context: dg.AssetExecutionContext, settings: MaintenanceSettingsResource,
                              trading_db: TradingDatabaseResource) -> dg.MaterializeResult:
    cfg = settings.get()
    window = context.partition_time_window
    zone = ZoneInfo(cfg.maintenance.scheduling.timezone)
    first = window.start.astimezone(zone).date()
    last = window.end.astimezone(zone).date()
    label = f"{first.isoformat()}_to_{date.fromordinal(last.toordinal() - 1).isoformat()}"
    report = _report_for_partition(context, "weekly", label, cfg, trading_db)
    paths = _write_all(report, cfg)
    return dg.MaterializeResult(metadata=_metadata(report, paths))


maintenance_report_daily_job = MAINTENANCE_REPORT_DAILY.asset_job(
    "maintenance_report_daily_job", selection=[maintenance_report_daily], partitions_def=daily_report_partitions
)
maintenance_report_weekly_job = MAINTENANCE_REPORT_WEEKLY.asset_job(
    "maintenance_report_weekly_job", selection=[maintenance_report_weekly], partitions_def=weekly_report_partitions
)


def _trading_day_report(context: dg.ScheduleEvaluationContext, settings: MaintenanceSettingsResource):
    day = context.scheduled_execution_time.astimezone(ZoneInfo(settings.get().maintenance.scheduling.timezone)).date()
    if not is_trading_day(day):
        return dg.SkipReason(f"{day.isoformat()} is not an NYSE trading day: no daily report")
    return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())


def _last_week_report(context: dg.ScheduleEvaluationContext):
    week = weekly_report_partitions.get_last_partition_key(current_time=context.scheduled_execution_time)
    if week is None:
        return dg.SkipReason("no complete week since the partitions start")
    return dg.RunRequest(run_key=week, partition_key=week)


maintenance_report_daily_schedule = MAINTENANCE_REPORT_DAILY.schedule(maintenance_report_daily_job, _trading_day_report)
maintenance_report_weekly_schedule = MAINTENANCE_REPORT_WEEKLY.schedule(maintenance_report_weekly_job, _last_week_report)
