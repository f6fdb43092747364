"""`generate_report`: the one entry point the assets, the CLI and the API use to write a report."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.intelligence import insights
from trading_maintenance.core.intelligence.activity import recent_fills_per_hour
from trading_maintenance.core.reports.build import TIMEZONE, build_report, check_sections
from trading_maintenance.core.reports.history import load_health, load_runs
from trading_maintenance.core.reports.render import RENDERERS

FORMATS = tuple(RENDERERS)
WEEK_START_HOUR = 6  # weekly reports run Sunday 06:00 New York, the week before it


def _at(day: date, hour: int = 0) -> float:
    return datetime.combine(day, time(hour), ZoneInfo(TIMEZONE)).timestamp()


def report_period(report_type: str, day: date | None = None, since: date | None = None, until: date | None = None,
                  today: date | None = None) -> tuple[float, float, str]:
    """(start, end, label) in epoch seconds for a daily, weekly or custom report."""
    today = today or datetime.now(ZoneInfo(TIMEZONE)).date()
    if report_type == "daily":
        day = day or today
        return _at(day), _at(day + timedelta(days=1)), day.isoformat()
    if report_type == "weekly":
        # The week that ends on the Sunday on or before `day` (default: the last full week).
        anchor = day or today
        sunday = anchor - timedelta(days=(anchor.weekday() + 1) % 7)
        first = sunday - timedelta(days=7)
        return _at(first, WEEK_START_HOUR), _at(sunday, WEEK_START_HOUR), f"{first.isoformat()}_to_{(sunday - timedelta(days=1)).isoformat()}"
    if report_type == "custom":
        if since is None or until is None:
            raise ValueError("a custom report needs both --since and --until (YYYY-MM-DD)")
        if until < since:
            raise ValueError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
        if (until - since).days > 366:
            raise ValueError("a custom report covers at most 366 days (--since to --until)")
        return _at(since), _at(until + timedelta(days=1)), f"{since.isoformat()}_to_{until.isoformat()}"
    raise ValueError(f"report type must be daily, weekly or custom, got {report_type!r}")


def report_path(reports_dir: Path, report_type: str, label: str, fmt: str) -> Path:
    return Path(reports_dir) / "maintenance" / report_type / f"maintenance_report_{report_type}_{label}.{fmt}"


def build(instance, report_type: str, start: float, end: float, label: str, settings, sections=None,
          exclude_run_ids: frozenset[str] = frozenset(), fills_by_hour: dict[int, float] | None = None) -> dict:
    """The report of [start, end); its recommendations include the schedule advice and the
    correlation of maintenance with health dips and with trading (`fills_by_hour`, when read)."""
    chosen = check_sections(sections, report_type)
    length = end - start
    runs = load_runs(instance, start, end, exclude_run_ids)
    points = load_health(instance, start, end)
    previous = load_health(instance, start - length, start)
    extra = None
    if "recommendations" in chosen:
        extra = maintenance_insights(instance, settings, runs, end, fills_by_hour or {})["recommendations"]
    return build_report(report_type, (start, end), (start - length, start), label, runs, previous, points, chosen,
                        limits_from(settings), extra)


def maintenance_insights(instance, settings, runs, until: float, fills_by_hour: dict[int, float]) -> dict:
    """Schedule advice from the load history of the weeks before `until`, and the correlations."""
    scheduling = settings.maintenance.scheduling
    load_points = load_health(instance, until - insights.LOAD_HISTORY_DAYS * 86400, until)
    return insights.analyse(runs, load_points, fills_by_hour, schedule_hours(scheduling), scheduling.timezone, until,
                            scheduling.market_calendar)


def schedule_hours(scheduling) -> dict[str, int]:
    """task -> the local hour its schedule fires at, from the project's one schedule table."""
    from trading_maintenance.core.runs.schedule_table import SCHEDULE_TABLE, cron_for

    return insights.scheduled_hours({row.task: cron_for(row, scheduling)[0] for row in SCHEDULE_TABLE})


def write(report: dict, reports_dir: Path, fmt: str, ui_base_url: str = "") -> Path:
    if fmt not in RENDERERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    text = RENDERERS[fmt](report, ui_base_url) if fmt == "html" else RENDERERS[fmt](report)
    return atomic_write_text(report_path(reports_dir, report["type"], report["period"]["label"], fmt), text)


def limits_from(settings) -> dict:
    thresholds = settings.maintenance.alerts
    return {"disk_percent": thresholds.disk, "memory_percent": thresholds.memory, "cpu_percent": thresholds.cpu,
            "health_score": None, "redis_used_memory_bytes": None}


def generate_report(instance, report_type: str, fmt: str, day: date | None = None, since: date | None = None,
                    until: date | None = None, sections: list[str] | None = None, settings=None,
                    exclude_run_ids: frozenset[str] = frozenset(), period: tuple[float, float, str] | None = None,
                    fills_by_hour: dict[int, float] | None = None, open_trading_engine=None) -> Path:
    """Write one report under reports/maintenance/{daily,weekly,custom}/ and return its path.

    `period` (start, end, label) overrides the dates, e.g. an asset partition's time window.
    `fills_by_hour` feeds the schedule advice; when None it is read through `open_trading_engine` (a callable
    returning the trading database's engine), and without one the advice goes on without trading activity."""
    from trading_maintenance.settings import get_settings

    settings = settings or get_settings()
    if fmt not in RENDERERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    start, end, label = period or report_period(report_type, day, since, until)
    if fills_by_hour is None and open_trading_engine is None:
        fills_by_hour = {}
    elif fills_by_hour is None:
        fills_by_hour, _ = recent_fills_per_hour(open_trading_engine, end, settings.maintenance.scheduling.timezone,
                                                 insights.LOAD_HISTORY_DAYS)
    report = build(instance, report_type, start, end, label, settings, sections, exclude_run_ids, fills_by_hour)
    return write(report, settings.reports_dir, fmt, settings.notifications.ui_base_url)
