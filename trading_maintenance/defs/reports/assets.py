"""Daily and weekly maintenance reports: HTML, JSON and CSV under reports/maintenance/{daily,weekly}/.

Both read Dagster's run and event storage and the `system_health` history through
`core.reports.generate`; the daily one also sends the day's summary (email and Slack).
"""

from datetime import date
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.common.market_hours import is_trading_day
from trading_maintenance.core.reports.build import TIMEZONE
from trading_maintenance.core.reports.generate import FORMATS, build, limits_from, write
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource
from trading_maintenance.settings import get_settings

SYSTEM_HEALTH = dg.AssetKey("system_health")
DAILY_REPORT_HOUR = 18  # after the close: the trading day's report
WEEKLY_REPORT_HOUR = 6  # Sunday morning: the week before


def _tags(task: str) -> dict[str, str]:
    return {"maintenance/task": task, "dagster/max_runtime": str(get_settings().tasks.task_timeout_minutes * 60)}


daily_report_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().maintenance.scheduling.partitions_start_date, timezone=TIMEZONE, end_offset=1
)
weekly_report_partitions = dg.WeeklyPartitionsDefinition(
    start_date=get_settings().maintenance.scheduling.partitions_start_date, timezone=TIMEZONE,
    day_offset=0, hour_offset=WEEKLY_REPORT_HOUR,
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


def _report_for_partition(context: dg.AssetExecutionContext, report_type: str, label: str, settings) -> dict:
    window = context.partition_time_window
    return build(context.instance, report_type, window.start.timestamp(), window.end.timestamp(), label,
                 limits_from(settings), None, frozenset({context.run_id}))


@dg.asset(
    partitions_def=daily_report_partitions,
    group_name="reports",
    kinds={"html", "json", "csv"},
    deps=[SYSTEM_HEALTH],
    owners=["team:trading-ops"],
    description="The trading day's maintenance report (HTML, JSON, CSV) from run storage and health history; "
                "sends the daily summary by email and Slack.",
)
def maintenance_report_daily(context: dg.AssetExecutionContext, settings: MaintenanceSettingsResource,
                             alerts: AlertsResource) -> dg.MaterializeResult:
    cfg = settings.get()
    day = context.partition_key
    report = _report_for_partition(context, "daily", day, cfg)
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
    owners=["team:trading-ops"],
    description="The week's maintenance report: efficiency (bytes freed per maintenance minute), health trends, "
                "a task effectiveness ranking, failures and recommendations.",
)
def maintenance_report_weekly(context: dg.AssetExecutionContext, settings: MaintenanceSettingsResource) -> dg.MaterializeResult:
    cfg = settings.get()
    window = context.partition_time_window
    first = window.start.astimezone(ZoneInfo(TIMEZONE)).date()
    last = (window.end.astimezone(ZoneInfo(TIMEZONE))).date()
    label = f"{first.isoformat()}_to_{date.fromordinal(last.toordinal() - 1).isoformat()}"
    report = _report_for_partition(context, "weekly", label, cfg)
    paths = _write_all(report, cfg)
    return dg.MaterializeResult(metadata=_metadata(report, paths))


maintenance_report_daily_job = dg.define_asset_job(
    "maintenance_report_daily_job", selection=[maintenance_report_daily], partitions_def=daily_report_partitions,
    description="Write the trading day's maintenance report and send the daily summary.", tags=_tags("maintenance_report_daily"),
)
maintenance_report_weekly_job = dg.define_asset_job(
    "maintenance_report_weekly_job", selection=[maintenance_report_weekly], partitions_def=weekly_report_partitions,
    description="Write the week's maintenance report.", tags=_tags("maintenance_report_weekly"),
)


@dg.schedule(
    job=maintenance_report_daily_job,
    cron_schedule=f"0 {DAILY_REPORT_HOUR} * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="18:00 New York on NYSE trading days: the day's report and summary (holidays skipped).",
)
def maintenance_report_daily_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE)).date()
    if not is_trading_day(day):
        return dg.SkipReason(f"{day.isoformat()} is not an NYSE trading day: no daily report")
    return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())


maintenance_report_weekly_schedule = dg.build_schedule_from_partitioned_job(
    maintenance_report_weekly_job,
    name="maintenance_report_weekly_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 06:00 New York: the report of the week that just ended.",
)
