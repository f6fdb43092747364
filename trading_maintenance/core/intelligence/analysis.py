"""Statistics over maintenance history that something acts on: degradations, health dips after
maintenance, maintenance against trading activity, failures clustered by error type."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from trading_maintenance.core.reports.build import error_patterns
from trading_maintenance.core.reports.history import HealthPoint, RunRow

DEGRADATION_FACTOR = 1.5  # more than 50 % worse than the metric's own median
MIN_BASELINE = 3
# Health metrics where a rise is a degradation (latencies), and where a fall is (the score).
RISING_IS_WORSE = ("redis_latency_ms", "database_latency_ms")
FALLING_IS_WORSE = ("health_score",)
DIP_POINTS = 5.0


@dataclass(frozen=True)
class Degradation:
    key: str
    subject: str
    latest: float
    median: float
    change_percent: float
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def duration_degradations(runs: list[RunRow], now: float, window_days: float = 7.0) -> list[Degradation]:
    """Tasks whose latest run took more than 50 % longer than the median of their other runs in the window."""
    by_task: dict[str, list[RunRow]] = defaultdict(list)
    for run in runs:
        if run.status == "SUCCESS" and not run.dry_run and run.duration is not None and run.created >= now - window_days * 86400:
            by_task[run.task].append(run)
    found = []
    for task, task_runs in sorted(by_task.items()):
        task_runs.sort(key=lambda r: r.created)
        latest, baseline = task_runs[-1], [r.duration for r in task_runs[:-1]]
        if len(baseline) < MIN_BASELINE:
            continue
        median = statistics.median(baseline)
        if median > 0 and latest.duration > median * DEGRADATION_FACTOR:
            change = round((latest.duration / median - 1) * 100, 1)
            found.append(Degradation(f"degradation:duration:{task}", task, latest.duration, round(median, 3), change,
                                     f"{task} took {latest.duration:.1f}s, {change:g}% above its 7-day median {median:.1f}s"))
    return found


def health_degradations(points: list[HealthPoint]) -> list[Degradation]:
    """Health metrics whose latest sample is more than 50 % worse than their median over the points."""
    found = []
    for metric in FALLING_IS_WORSE + RISING_IS_WORSE:
        values = [p.values[metric] for p in points if metric in p.values and p.values[metric] >= 0]
        if len(values) < MIN_BASELINE + 1:
            continue
        latest, median = values[-1], statistics.median(values[:-1])
        if median <= 0:
            continue
        if metric in FALLING_IS_WORSE and latest < median * (1 - (DEGRADATION_FACTOR - 1)):
            change = round((latest / median - 1) * 100, 1)
        elif metric in RISING_IS_WORSE and latest > median * DEGRADATION_FACTOR:
            change = round((latest / median - 1) * 100, 1)
        else:
            continue
        found.append(Degradation(f"degradation:health:{metric}", metric, latest, round(median, 3), change,
                                 f"{metric} is {latest:g}, {change:+g}% against its median {median:g}"))
    return found


def maintenance_health_correlation(runs: list[RunRow], points: list[HealthPoint], window_seconds: float = 3600) -> list[dict]:
    """Per task: mean health-score change from just before a run to just after it, and how often a dip followed."""
    changes: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.task == "system_health_check" or run.dry_run or not (run.start and run.end):
            continue
        before = [p for p in points if run.start - window_seconds <= p.timestamp <= run.start and "health_score" in p.values]
        after = [p for p in points if run.end <= p.timestamp <= run.end + window_seconds and "health_score" in p.values]
        if before and after:
            changes[run.task].append(after[0].values["health_score"] - before[-1].values["health_score"])
    return [
        {"task": task, "runs_measured": len(deltas), "mean_health_change": round(statistics.fmean(deltas), 2),
         "dips": sum(1 for d in deltas if d <= -DIP_POINTS), "dip_rate": round(sum(1 for d in deltas if d <= -DIP_POINTS) / len(deltas), 3)}
        for task, deltas in sorted(changes.items())
    ]


def pearson(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    try:
        return round(statistics.correlation(xs, ys), 3)
    except statistics.StatisticsError:
        return None


def hour_of(ts: float, tz: str) -> int:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).hour


def trading_activity_correlation(runs: list[RunRow], fills_per_hour: dict[int, float], tz: str) -> dict:
    """Maintenance minutes per hour of day against fills per hour of day: does maintenance run when the desk trades?"""
    minutes = [0.0] * 24
    for run in runs:
        if run.task != "system_health_check" and run.duration is not None and run.start:
            minutes[hour_of(run.start, tz)] += run.duration / 60.0
    fills = [float(fills_per_hour.get(h, 0.0)) for h in range(24)]
    overlap = [h for h in range(24) if minutes[h] > 0 and fills[h] > 0]
    return {"correlation": pearson(minutes, fills), "maintenance_minutes_by_hour": [round(m, 2) for m in minutes],
            "fills_by_hour": fills, "hours_with_both": overlap}


def failure_clusters(runs: list[RunRow]) -> list[dict]:
    return error_patterns(runs)
