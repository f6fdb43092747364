"""Which hours are quiet enough for heavy maintenance, from the platform's own load and trading.

An hour's load combines three things, each scaled to 0..1 across the day: CPU seen by the health
checks, fills traded in that hour, and the share of recent weekdays on which NYSE's regular
session was open then. The quietest hours are those with the lowest load; a task scheduled in an
hour whose load is in the busiest third is flagged.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from trading_maintenance.core.reports.history import HealthPoint

HEAVY_TASKS = frozenset({"backup", "database_maintenance", "trading_data_maintenance"})


def market_open_share(days: list[date], tz: str, calendar_name: str = "XNYS") -> list[float]:
    """Per local hour, the share of `days` whose regular session covered any of that hour."""
    from trading_maintenance.core.common.market_hours import is_trading_day, session_bounds

    counts = [0] * 24
    for day in days:
        if not is_trading_day(day, calendar_name):
            continue
        opens, closes = session_bounds(day, calendar_name)
        local_open, local_close = opens.astimezone(ZoneInfo(tz)), closes.astimezone(ZoneInfo(tz))
        for hour in range(24):
            start = datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(tz))
            if start < local_close and start + timedelta(hours=1) > local_open:
                counts[hour] += 1
    return [c / len(days) if days else 0.0 for c in counts]


def _scaled(values: list[float]) -> list[float]:
    top = max(values) if values else 0
    return [v / top if top > 0 else 0.0 for v in values]


def hourly_load(points: list[HealthPoint], fills_by_hour: dict[int, float], open_share: list[float], tz: str) -> list[dict]:
    cpu: dict[int, list[float]] = defaultdict(list)
    for point in points:
        if "cpu_percent" in point.values:
            cpu[datetime.fromtimestamp(point.timestamp, ZoneInfo(tz)).hour].append(point.values["cpu_percent"])
    cpu_mean = [statistics.fmean(cpu[h]) if cpu[h] else 0.0 for h in range(24)]
    fills = [float(fills_by_hour.get(h, 0.0)) for h in range(24)]
    cpu_s, fills_s = _scaled(cpu_mean), _scaled(fills)
    return [
        {"hour": h, "cpu_mean": round(cpu_mean[h], 2), "cpu_samples": len(cpu[h]), "fills": fills[h],
         "market_open_share": round(open_share[h], 3), "load": round((cpu_s[h] + fills_s[h] + open_share[h]) / 3, 4)}
        for h in range(24)
    ]


def _reason(row: dict) -> str:
    parts = [f"CPU {row['cpu_mean']:g}% over {row['cpu_samples']} checks" if row["cpu_samples"] else "no CPU samples",
             f"{row['fills']:g} fills", "market closed" if row["market_open_share"] == 0 else f"market open on {row['market_open_share']:.0%} of days"]
    return ", ".join(parts)


def advise(load: list[dict], scheduled: dict[str, int], quiet_count: int = 3) -> dict:
    """The quietest hours (with why) and the tasks whose scheduled hour is busy."""
    ordered = sorted(load, key=lambda r: (r["load"], r["hour"]))
    quiet = [{"hour": r["hour"], "load": r["load"], "reason": _reason(r)} for r in ordered[:quiet_count]]
    loads = sorted(r["load"] for r in load)
    busy_threshold = loads[int(len(loads) * 2 / 3)] if loads else 0.0
    quiet_names = ", ".join(f"{q['hour']:02d}:00" for q in quiet)
    flagged = []
    for task, hour in sorted(scheduled.items()):
        row = load[hour]
        if row["load"] > 0 and row["load"] >= busy_threshold:
            flagged.append({"task": task, "hour": hour, "load": row["load"], "heavy": task in HEAVY_TASKS,
                            "reason": f"{hour:02d}:00 is one of the busiest hours ({_reason(row)}); "
                                      f"quieter: {quiet_names}"})
    return {"quiet_hours": quiet, "busy_from_load": busy_threshold, "flagged": flagged}


def recommendations(advice: dict) -> list[dict]:
    return [
        {"severity": "warning" if item["heavy"] else "info", "topic": f"schedule:{item['task']}",
         "message": item["reason"], "action": f"move {item['task']} to {advice['quiet_hours'][0]['hour']:02d}:00"}
        for item in advice["flagged"] if advice["quiet_hours"]
    ]


def recent_days(now: datetime, days: int = 28) -> list[date]:
    today = now.astimezone(timezone.utc).date()
    return [today - timedelta(days=i) for i in range(1, days + 1)]
