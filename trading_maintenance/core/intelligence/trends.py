"""Trend and anomaly analysis over maintenance history (pure functions).

- Anomalies: robust z-scores (median and MAD), so one bad day does not hide the next.
- Trends: least-squares slope per day and, for a rising utilisation, the days until it crosses a limit.
- Reliability: failure rate per task over a window.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Anomaly:
    metric: str
    timestamp: float
    value: float
    robust_z: float
    direction: str  # "high" / "low"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Trend:
    metric: str
    slope_per_day: float
    latest: float
    samples: int
    days_until_limit: float | None
    limit: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def robust_anomalies(metric: str, series: list[tuple[float, float]], threshold: float = 3.5, min_samples: int = 8) -> list[Anomaly]:
    """Points whose modified z-score (0.6745 * (x - median) / MAD) exceeds the threshold."""
    if len(series) < min_samples:
        return []
    values = [v for _, v in series]
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    if mad == 0:
        spread = statistics.pstdev(values)
        if spread == 0:
            return []
        scale = spread / 0.6745 * 0.6745
        scores = [(t, v, (v - median) / spread) for t, v in series]
    else:
        scale = mad
        scores = [(t, v, 0.6745 * (v - median) / scale) for t, v in series]
    return [
        Anomaly(metric, t, v, round(z, 2), "high" if z > 0 else "low")
        for t, v, z in scores
        if abs(z) > threshold
    ]


def linear_trend(metric: str, series: list[tuple[float, float]], limit: float | None = None, min_samples: int = 4) -> Trend | None:
    """Least-squares slope (units per day); days until `limit` when rising toward it."""
    if len(series) < min_samples:
        return None
    xs = [t / 86400.0 for t, _ in series]
    ys = [v for _, v in series]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var_x = sum((x - mean_x) ** 2 for x in xs)
    if var_x == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var_x
    latest_x = max(xs)
    fitted_latest = mean_y + slope * (latest_x - mean_x)
    days = None
    if limit is not None and slope > 0:
        days = max(0.0, (limit - fitted_latest) / slope)
    return Trend(metric, round(slope, 4), round(ys[xs.index(latest_x)], 3), len(series), None if days is None else round(days, 1), limit)


def failure_rates(runs: list[tuple[str, bool]]) -> dict[str, dict]:
    """runs: (task, succeeded). Per task: runs, failures, failure_rate."""
    table: dict[str, dict] = {}
    for task, ok in runs:
        entry = table.setdefault(task, {"runs": 0, "failures": 0})
        entry["runs"] += 1
        entry["failures"] += 0 if ok else 1
    for entry in table.values():
        entry["failure_rate"] = round(entry["failures"] / entry["runs"], 3)
    return table


def recommendations(trends: list[Trend], anomalies: list[Anomaly], rates: dict[str, dict], horizon_days: float = 14.0) -> list[dict]:
    """What a person should do, most urgent first."""
    out: list[dict] = []
    for trend in trends:
        if trend.days_until_limit is not None and trend.days_until_limit <= horizon_days:
            severity = "critical" if trend.days_until_limit <= 3 else "warning"
            action = {
                "disk_percent": "run data_cleanup and log_rotation, or grow the volume",
                "memory_percent": "run cache_cleanup; check services for leaks",
                "redis_used_memory_bytes": "run cache_cleanup; review keys without TTL",
            }.get(trend.metric, "investigate the growth")
            out.append({"severity": severity, "topic": trend.metric,
                        "message": f"{trend.metric} rises {trend.slope_per_day:+.2f}/day and reaches {trend.limit:g} in about {trend.days_until_limit:g} days",
                        "action": action})
    for anomaly in anomalies:
        if anomaly.metric == "health_score" and anomaly.direction == "low":
            out.append({"severity": "warning", "topic": "health_score",
                        "message": f"health score {anomaly.value:g} is unusually low (robust z {anomaly.robust_z})",
                        "action": "read that health check's reasons in the run log"})
    for task, entry in sorted(rates.items()):
        if entry["runs"] >= 2 and entry["failure_rate"] >= 0.5:
            out.append({"severity": "warning", "topic": task,
                        "message": f"{task} failed {entry['failures']} of its last {entry['runs']} runs",
                        "action": f"open the failed {task} runs in the Dagster UI"})
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda r: order[r["severity"]])
