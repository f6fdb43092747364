"""Every maintenance schedule in one table, timed from `maintenance.scheduling`.

Rows anchored to the maintenance window follow `daily_maintenance_hour` and
`weekly_maintenance_day`: moving the window moves them all. Rows anchored to the market's clock
(the close, the open, midnight) keep their local time. Every row runs in `scheduling.timezone`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")

# daily_window / weekly_window: minutes after the daily maintenance hour (on the weekly maintenance
# day for weekly_window; a negative offset runs the evening before). daily_at / weekly_at: a fixed
# local time (weekdays_at: Monday to Friday). market_interval: every `market_hours_check_minutes`, the job's schedule decides.
Shape = Literal["daily_window", "weekly_window", "daily_at", "weekdays_at", "weekly_at", "market_interval"]


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    task: str
    shape: Shape
    description: str
    offset_minutes: int = 0
    at: str = "00:00"
    weekday: str = ""


SCHEDULE_TABLE: tuple[ScheduleRow, ...] = (
    ScheduleRow("system_health_check_schedule", "system_health_check", "market_interval",
                "every few minutes during NYSE regular hours (holidays and early closes respected), hourly otherwise"),
    ScheduleRow("api_rate_limit_schedule", "api_rate_limit_reset", "daily_at",
                "archive yesterday's API call counts and reset the daily counters", at="00:01"),
    ScheduleRow("data_cleanup_schedule", "data_cleanup", "daily_window",
                "apply file retention, remove duplicates, compress old kept files"),
    ScheduleRow("log_rotation_schedule", "log_rotation", "daily_window",
                "rotate logs over the size limit, compress and prune rotated logs", offset_minutes=30),
    ScheduleRow("cache_cleanup_schedule", "cache_cleanup", "daily_window",
                "Redis cache TTLs, idle and orphaned keys, memory purge when fragmented", offset_minutes=60),
    ScheduleRow("intelligent_maintenance_schedule", "intelligent_maintenance", "daily_at",
                "before the open: forecasts and anomalies from the last two weeks of health checks and runs", at="06:00"),
    ScheduleRow("tradenote_export_schedule", "tradenote_export", "daily_at",
                "TradeNote export of the day's fills, every calendar day (overnight and crypto fills happen on "
                "weekends and holidays too); the previous day again when fills arrived after its export", at="18:00"),
    ScheduleRow("maintenance_report_daily_schedule", "maintenance_report_daily", "weekdays_at",
                "after the close on NYSE trading days: the day's report and summary (holidays skipped)", at="18:00"),
    ScheduleRow("maintenance_report_weekly_schedule", "maintenance_report_weekly", "weekly_at",
                "the report of the week that just ended", at="06:00", weekday="sunday"),
    ScheduleRow("portfolio_reconciliation_schedule", "portfolio_reconciliation", "weekly_at",
                "portfolio reconciliation after the week's close", at="18:00", weekday="friday"),
    ScheduleRow("market_data_monthly_schedule", "trading_data_maintenance", "weekly_window",
                "consolidate the latest complete NYSE month (final once its last trading day has closed) and the "
                "current month so far", offset_minutes=-180),
    ScheduleRow("database_maintenance_schedule", "database_maintenance", "weekly_window",
                "vacuum, analyze, reindex and purge (the job refuses to run while NYSE is open)", offset_minutes=-60),
    ScheduleRow("backup_archive_schedule", "backup", "weekly_window",
                "back up configuration, Redis, the database and trading data; the restore drill follows it",
                offset_minutes=-30),
    ScheduleRow("performance_optimization_schedule", "performance_optimization", "weekly_window",
                "measure Redis, database, disk and network and write recommendations"),
    ScheduleRow("resource_optimization_schedule", "resource_optimization", "weekly_window",
                "after the weekly measurements: memory purge, list caps, gzip of old rotated logs and exports",
                offset_minutes=90),
    ScheduleRow("security_audit_schedule", "security_audit", "weekly_window",
                "secrets in logs, permissions, key age, exposed services (also on demand: "
                "`trading-maintenance run --task security_audit`)", offset_minutes=120),
)


def rows_for(task: str) -> list[ScheduleRow]:
    return [row for row in SCHEDULE_TABLE if row.task == task]


def cron_for(row: ScheduleRow, scheduling) -> tuple[str, str]:
    """(cron, when in words) of a row under the `scheduling` settings."""
    if row.shape == "market_interval":
        minutes = scheduling.market_hours_check_minutes
        return f"*/{minutes} * * * *", f"every {minutes} min (the schedule picks market or off hours)"
    if row.shape in ("daily_at", "weekdays_at", "weekly_at"):
        hour, minute = (int(part) for part in row.at.split(":"))
        if row.shape == "weekdays_at":
            return f"{minute} {hour} * * 1-5", f"Monday to Friday {hour:02d}:{minute:02d}"
        weekday = row.weekday if row.shape == "weekly_at" else None
        return _cron(hour * 60 + minute, weekday)
    weekday = scheduling.weekly_maintenance_day if row.shape == "weekly_window" else None
    return _cron(scheduling.daily_maintenance_hour * 60 + row.offset_minutes, weekday)


def _cron(minute_of_week_day: int, weekday: str | None) -> tuple[str, str]:
    day_shift, minute_of_day = divmod(minute_of_week_day, 24 * 60)
    hh, mm = divmod(minute_of_day, 60)
    if weekday is None:
        return f"{mm} {hh} * * *", f"daily {hh:02d}:{mm:02d}"
    dow = (WEEKDAYS.index(weekday) + day_shift) % 7
    return f"{mm} {hh} * * {dow}", f"{WEEKDAYS[dow].capitalize()} {hh:02d}:{mm:02d}"
