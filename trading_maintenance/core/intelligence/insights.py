"""Schedule advice and the correlation of maintenance with health and trading, as one analysis
that the intelligent_maintenance task publishes and the reports turn into recommendations."""

from __future__ import annotations

from datetime import datetime, timezone

from trading_maintenance.core.intelligence import schedule_advice
from trading_maintenance.core.intelligence.analysis import maintenance_health_correlation, trading_activity_correlation
from trading_maintenance.core.reports.history import HealthPoint, RunRow

LOAD_HISTORY_DAYS = 28
MIN_DIP_RUNS = 2
DIP_RATE_WARNING = 0.5
ACTIVITY_CORRELATION_WARNING = 0.5


def scheduled_hours(crons: dict[str, str]) -> dict[str, int]:
    """task -> the local hour its cron fires at; interval schedules (`*/5 * * * *`) have no one hour."""
    hours = {}
    for task, cron in crons.items():
        fields = cron.split()
        if len(fields) == 5 and fields[1].isdigit() and 0 <= int(fields[1]) <= 23:
            hours[task] = int(fields[1])
    return hours


def analyse(runs: list[RunRow], load_points: list[HealthPoint], fills_by_hour: dict[int, float], scheduled: dict[str, int],
            tz: str, now: float, calendar_name: str = "XNYS") -> dict:
    """Quiet hours and flagged schedules from the load history, the health change after each task's
    runs, and how maintenance minutes line up with fills per hour; with the recommendations they give."""
    days = schedule_advice.recent_days(datetime.fromtimestamp(now, timezone.utc), LOAD_HISTORY_DAYS)
    load = schedule_advice.hourly_load(load_points, fills_by_hour, schedule_advice.market_open_share(days, tz, calendar_name), tz)
    advice = schedule_advice.advise(load, scheduled)
    health = maintenance_health_correlation(runs, load_points)
    activity = trading_activity_correlation(runs, fills_by_hour, tz)
    return {
        "schedule_advice": advice,
        "hourly_load": load,
        "health_correlation": health,
        "trading_activity": activity,
        "recommendations": schedule_advice.recommendations(advice) + correlation_recommendations(health, activity),
    }


def correlation_recommendations(health: list[dict], activity: dict) -> list[dict]:
    out = []
    for row in health:
        if row["runs_measured"] >= MIN_DIP_RUNS and row["dip_rate"] >= DIP_RATE_WARNING:
            out.append({
                "severity": "warning", "topic": f"health_dip:{row['task']}",
                "message": f"the health score fell after {row['dips']} of {row['runs_measured']} {row['task']} runs "
                           f"(mean change {row['mean_health_change']:+g} points)",
                "action": f"move {row['task']} to a quiet hour or lighten it (read its run logs for what it holds)",
            })
    correlation = activity.get("correlation")
    if correlation is not None and correlation >= ACTIVITY_CORRELATION_WARNING and activity["hours_with_both"]:
        hours = ", ".join(f"{h:02d}:00" for h in activity["hours_with_both"])
        out.append({
            "severity": "warning", "topic": "maintenance_during_trading",
            "message": f"maintenance time follows trading activity (correlation {correlation:g}); both in {hours}",
            "action": "move maintenance out of the trading hours",
        })
    return out
