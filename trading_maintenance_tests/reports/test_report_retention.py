"""Report files are dated by the period they cover, so retention removes old ones even when rewritten today."""

import os
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from trading_maintenance.core.hygiene.cleanup import plan_cleanup, standard_categories
from trading_maintenance.core.reports.generate import FORMATS, generate_report, report_period
from trading_maintenance.settings import load_settings

NY = ZoneInfo("America/New_York")


def test_old_daily_weekly_and_custom_reports_expire_by_the_period_in_their_name(instance, data_dir):
    settings = load_settings(None).model_copy(update={"data_dir": data_dir})
    retention_days = settings.maintenance.data_retention.report_files
    today = datetime.now(NY).date()
    old = today - timedelta(days=retention_days + 10)
    old_paths, recent_paths = [], []
    for fmt in FORMATS:
        old_paths.append(generate_report(instance, "daily", fmt, day=old, settings=settings))
        old_paths.append(generate_report(instance, "weekly", fmt, period=report_period("weekly", old), settings=settings))
        old_paths.append(generate_report(instance, "custom", fmt, since=old - timedelta(days=3), until=old, settings=settings))
        recent_paths.append(generate_report(instance, "daily", fmt, day=today, settings=settings))
        # A long custom report that ends today is as young as its last day, however early it starts.
        recent_paths.append(generate_report(instance, "custom", fmt, since=today - timedelta(days=300), until=today, settings=settings))
    assert {p.parent.name for p in old_paths} == {"daily", "weekly", "custom"}

    reports = next(c for c in standard_categories(settings) if c.name == "reports")
    plan = plan_cleanup([reports], data_dir, time.time(), compress_after_days=None)[0]
    assert sorted(e.path for e in plan.delete) == sorted(str(p) for p in old_paths)  # written minutes ago, yet expired
    assert {e.path for e in plan.keep} == {str(p) for p in recent_paths}
    assert plan.notes == []  # the dates in these names are the layout's, not misleading


def test_a_report_name_outside_the_layout_keeps_its_file_time(data_dir):
    settings = load_settings(None).model_copy(update={"data_dir": data_dir})
    stray = settings.reports_dir / "maintenance" / "daily" / "maintenance_report_weekly_2020-01-06.html"
    stray.parent.mkdir(parents=True)
    stray.write_text("<html></html>")
    reports = next(c for c in standard_categories(settings) if c.name == "reports")
    plan = plan_cleanup([reports], data_dir, time.time(), compress_after_days=None)[0]
    assert [e.path for e in plan.keep] == [str(stray)] and plan.delete == []
    assert os.path.exists(stray)
