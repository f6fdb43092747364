"""The health schedule: every 5 minutes in NYSE regular hours, hourly otherwise (real calendar)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from trading_maintenance.core.common.market_hours import is_market_open, session_bounds
from trading_maintenance.core.health.cadence import health_check_due
from trading_maintenance.defs.health.ops import system_health_check_schedule
from trading_maintenance.resources import MaintenanceSettingsResource

NY = ZoneInfo("America/New_York")


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY)


def test_early_close_and_holiday_from_the_calendar():
    open_, close = session_bounds(ny(2026, 11, 27).date())
    assert close.astimezone(NY).hour == 13  # day after Thanksgiving closes at 13:00
    assert is_market_open(ny(2026, 11, 27, 12, 55)) and not is_market_open(ny(2026, 11, 27, 13, 0))
    assert not is_market_open(ny(2026, 12, 25, 11, 0))  # Christmas
    assert is_market_open(ny(2026, 12, 24, 11, 0))


@pytest.mark.parametrize(
    "when, due",
    [
        (ny(2026, 11, 30, 9, 30), True),  # Monday open
        (ny(2026, 11, 30, 9, 35), True),
        (ny(2026, 11, 30, 9, 25), False),  # pre-market, not on the hour
        (ny(2026, 11, 30, 9, 0), True),  # off-hours hourly tick
        (ny(2026, 11, 30, 15, 55), True),
        (ny(2026, 11, 30, 16, 5), False),
        (ny(2026, 11, 27, 12, 55), True),  # early close day, still open
        (ny(2026, 11, 27, 13, 5), False),  # after the 13:00 early close
        (ny(2026, 11, 27, 14, 0), True),  # hourly afterwards
        (ny(2026, 12, 25, 10, 5), False),  # holiday
        (ny(2026, 12, 25, 10, 0), True),
        (ny(2026, 11, 28, 11, 35), False),  # Saturday
    ],
)
def test_cadence(when, due):
    assert health_check_due(when)[0] is due


SETTINGS = {"settings": MaintenanceSettingsResource()}


def test_schedule_evaluation_runs_and_skips_with_reason():
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=ny(2026, 11, 30, 10, 5), resources=SETTINGS) as inside:
            request = system_health_check_schedule.evaluate_tick(inside)
        assert len(request.run_requests) == 1 and request.run_requests[0].run_key
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=ny(2026, 11, 27, 13, 5), resources=SETTINGS) as closed:
            skipped = system_health_check_schedule.evaluate_tick(closed)
        assert not skipped.run_requests and "market closed" in skipped.skip_message
    assert system_health_check_schedule.execution_timezone == "America/New_York"
    assert system_health_check_schedule.description


def test_maintenance_window_follows_settings_and_wraps_midnight():
    from types import SimpleNamespace

    from trading_maintenance.core.runs.schedule_table import SCHEDULE_TABLE, cron_for

    rows = {row.name: row for row in SCHEDULE_TABLE}

    def cron(name, hour=2, day="sunday"):
        scheduling = SimpleNamespace(daily_maintenance_hour=hour, weekly_maintenance_day=day, market_hours_check_minutes=5)
        return cron_for(rows[name], scheduling)

    assert cron("data_cleanup_schedule") == ("0 2 * * *", "daily 02:00")
    assert cron("resource_optimization_schedule") == ("30 3 * * 0", "Sunday 03:30")
    assert cron("resource_optimization_schedule", 23, "saturday") == ("30 0 * * 0", "Sunday 00:30")
    assert cron("cache_cleanup_schedule", 23) == ("0 0 * * *", "daily 00:00")
    # a negative offset runs the evening before the weekly maintenance day
    assert cron("market_data_monthly_schedule") == ("0 23 * * 6", "Saturday 23:00")
    assert cron("market_data_monthly_schedule", 1, "monday")[0] == "0 22 * * 0"
    assert cron("log_rotation_schedule")[0] == "30 2 * * *" and cron("performance_optimization_schedule")[0] == "0 2 * * 0"
    assert cron("api_rate_limit_schedule", 5)[0] == "1 0 * * *"
