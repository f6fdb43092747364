"""Schedule advice and maintenance correlations on seeded data, in the intelligent_maintenance task
and in the daily report's recommendations."""

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from trading_maintenance.core.intelligence import insights
from trading_maintenance.core.intelligence.activity import recent_fills_per_hour
from trading_maintenance.core.intelligence.schedule_advice import HEAVY_TASKS
from trading_maintenance.core.reports.generate import generate_report, schedule_hours
from trading_maintenance.core.reports.history import HealthPoint, RunRow
from trading_maintenance.core.trading import schema as ts
from trading_maintenance.defs.intelligence.ops import intelligent_maintenance_job
from trading_maintenance.resources.database import settings_trading_engine
from trading_maintenance_tests.reports.conftest import run, store_health

NY = ZoneInfo("America/New_York")
QUIET_HOUR, TRADING_HOURS = 4, range(10, 15)


def _local_hour_ts(days_ago: int, hour: int, now: float) -> float:
    day = datetime.fromtimestamp(now, NY).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, 30, tzinfo=NY).timestamp()


def _planted_load(now: float, busy_hour: int) -> list[tuple[float, float]]:
    """One health check per local hour of yesterday: CPU 95 % in the busy hour, 1 % in the quiet one, 5 % otherwise."""
    cpu = {busy_hour: 95.0, QUIET_HOUR: 1.0}
    return [(_local_hour_ts(1, hour, now), cpu.get(hour, 5.0)) for hour in range(24)]


def test_quiet_hours_and_a_busy_heavy_schedule_from_load_fills_and_the_nyse_calendar():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=NY).timestamp()
    points = [HealthPoint(t, {"cpu_percent": cpu}) for t, cpu in _planted_load(now, busy_hour=1)]
    fills = {hour: 40.0 for hour in TRADING_HOURS}
    found = insights.analyse([], points, fills, {"database_maintenance": 1, "data_cleanup": 3, "log_rotation": 11},
                             "America/New_York", now)
    advice = found["schedule_advice"]
    assert advice["quiet_hours"][0]["hour"] == QUIET_HOUR
    assert "market closed" in advice["quiet_hours"][0]["reason"] and "0 fills" in advice["quiet_hours"][0]["reason"]
    load = {row["hour"]: row for row in found["hourly_load"]}
    assert load[11]["market_open_share"] > 0.5 and load[3]["market_open_share"] == 0  # NYSE's session, in New York time
    flagged = {item["task"]: item for item in advice["flagged"]}
    assert set(flagged) == {"database_maintenance", "log_rotation"}  # 01:00 by CPU, 11:00 by market and fills
    assert flagged["database_maintenance"]["heavy"] and "04:00" in flagged["database_maintenance"]["reason"]
    recommendations = {r["topic"]: r for r in found["recommendations"]}
    assert recommendations["schedule:database_maintenance"]["severity"] == "warning"
    assert recommendations["schedule:database_maintenance"]["action"] == "move database_maintenance to 04:00"
    assert "schedule:data_cleanup" not in recommendations


def _row(task: str, start: float, minutes: float = 10) -> RunRow:
    return RunRow(run_id=f"{task}-{start}", task=task, job=f"{task}_job", status="SUCCESS", created=start, start=start,
                  end=start + minutes * 60)


def test_a_run_followed_by_a_health_dip_is_correlated_and_trading_hours_maintenance_flagged():
    base = datetime(2026, 11, 24, 0, 0, tzinfo=NY).timestamp()
    runs, points = [], []
    for day in range(3):
        start = base + day * 86400 + 11 * 3600  # 11:00, while the desk trades
        runs += [_row("database_maintenance", start), _row("log_rotation", start + 4 * 3600)]
        points += [HealthPoint(start - 60, {"health_score": 92.0}), HealthPoint(start + 660, {"health_score": 70.0}),
                   HealthPoint(start + 4 * 3600 - 60, {"health_score": 91.0}), HealthPoint(start + 4 * 3600 + 660, {"health_score": 90.0})]
    fills = {hour: 50.0 for hour in TRADING_HOURS}
    found = insights.analyse(runs, points, fills, {}, "America/New_York", base + 4 * 86400)
    dips = {row["task"]: row for row in found["health_correlation"]}
    assert dips["database_maintenance"] == {"task": "database_maintenance", "runs_measured": 3, "mean_health_change": -22.0,
                                            "dips": 3, "dip_rate": 1.0}
    assert dips["log_rotation"]["dips"] == 0
    topics = {r["topic"]: r for r in found["recommendations"]}
    assert "health_dip:database_maintenance" in topics and "health_dip:log_rotation" not in topics
    assert "3 of 3 database_maintenance runs" in topics["health_dip:database_maintenance"]["message"]
    assert found["trading_activity"]["hours_with_both"] == [11]
    assert found["trading_activity"]["correlation"] is not None


def test_scheduled_hours_skip_interval_schedules():
    assert insights.scheduled_hours({"a": "30 2 * * *", "b": "*/5 * * * *", "c": "0 23 * * 0"}) == {"a": 2, "c": 23}


def _seed_fills(engine, now: float) -> None:
    ts.metadata.create_all(engine)
    rows = []
    for days_ago in range(1, 6):
        for hour in TRADING_HOURS:
            at = datetime.fromtimestamp(_local_hour_ts(days_ago, hour, now), timezone.utc)
            rows += [{"symbol": "AAPL", "side": "buy", "quantity": Decimal(1), "price": Decimal(100), "timestamp": at}] * 4
    with engine.begin() as conn:
        conn.execute(ts.fills.insert(), rows)


def _seed_history(instance, now: float, busy_hour: int) -> None:
    for at, cpu in _planted_load(now, busy_hour):
        store_health(instance, at, cpu_percent=cpu)
    for _ in range(2):  # each run of the task is followed by a 20-point dip
        store_health(instance, time.time(), health_score=90.0)
        run(instance, "database_maintenance")
        store_health(instance, time.time(), health_score=70.0)


def test_intelligent_maintenance_publishes_advice_and_correlations(instance, make_resources, redis_client):
    resources = make_resources()
    settings = resources["settings"].get()
    hours = schedule_hours(settings.maintenance.scheduling)
    busy_hour = hours["database_maintenance"]
    heavy_in_busy_hour = sorted(task for task, hour in hours.items() if hour == busy_hour and task in HEAVY_TASKS)
    now = time.time()
    _seed_fills(resources["trading_db"].get_engine(), now)
    _seed_history(instance, now, busy_hour)

    result = intelligent_maintenance_job.execute_in_process(instance=instance, resources=resources)
    assert result.success
    published = json.loads(redis_client.get("maintenance:result:intelligent_maintenance"))
    assert published["fills_read"] is True
    assert published["quiet_hours"][0]["hour"] == QUIET_HOUR
    assert [f["task"] for f in published["flagged_schedules"] if f["heavy"]] == heavy_in_busy_hour
    assert "database_maintenance" in heavy_in_busy_hour
    assert published["trading_activity"]["fills_by_hour"][TRADING_HOURS[0]] > 0
    dip = next(row for row in published["health_correlation"] if row["task"] == "database_maintenance")
    assert (dip["runs_measured"], dip["dips"]) == (2, 2)
    topics = {r["topic"] for r in published["recommendations"]}
    assert {"schedule:database_maintenance", "health_dip:database_maintenance"} <= topics
    metadata = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").step_output_data.metadata
    assert "database_maintenance" in metadata["flagged_schedules"].value
    assert metadata["fills_read"].value is True

    # Reports read the fills from the trading database the settings name, as the task does.
    fills, note = recent_fills_per_hour(lambda: settings_trading_engine(settings), now, "America/New_York", insights.LOAD_HISTORY_DAYS)
    assert note == "" and fills == {hour: round(5 * 4 / insights.LOAD_HISTORY_DAYS, 3) for hour in TRADING_HOURS}
    report = json.loads(generate_report(instance, "daily", "json", settings=settings,
                                       open_trading_engine=lambda: settings_trading_engine(settings)).read_text())
    report_topics = {r["topic"] for r in report["recommendations"]}
    assert {"schedule:database_maintenance", "health_dip:database_maintenance"} <= report_topics
