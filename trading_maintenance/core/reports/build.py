"""Maintenance reports assembled from run rows and health points (pure functions).

JSON keys (schema "maintenance-report/1"):
- type, period {start, end, label}, previous_period, generated_at, sections
- tasks: one row per task: task, runs (finished, not dry), succeeded, failed, canceled, dry_runs,
  duration_p50_s, duration_p95_s, bytes_freed, files_processed (dry runs never add to these)
- totals: the same counters over every task
- resources: per metric {current: {samples, min, mean, max, last}, previous: {...}, series: [[t, v]]}
- failures: run_id, task, status, started, error (first line), error_type
- recommendations: severity, topic, message, action
- efficiency (weekly): bytes_freed, maintenance_minutes, bytes_freed_per_minute
- health_trends (weekly): one row per day: day, samples, mean, min
- effectiveness (weekly): tasks ranked by bytes freed per minute, then success rate
- benchmarks, resource_usage, error_patterns, optimization_impact (custom)
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from trading_maintenance.core.intelligence import trends
from trading_maintenance.core.reports.history import HEALTH_METRICS, HealthPoint, RunRow

SCHEMA = "maintenance-report/1"
TIMEZONE = "America/New_York"
RESOURCE_METRICS = ("health_score", "cpu_percent", "memory_percent", "disk_percent", "redis_used_memory_bytes")
SECTIONS = ("tasks", "resources", "failures", "recommendations", "efficiency", "health_trends", "effectiveness",
            "benchmarks", "resource_usage", "error_patterns", "optimization_impact")
DEFAULT_SECTIONS = {
    "daily": ("tasks", "resources", "failures", "recommendations"),
    "weekly": ("tasks", "resources", "failures", "recommendations", "efficiency", "health_trends", "effectiveness"),
    "custom": ("tasks", "benchmarks", "resource_usage", "error_patterns", "optimization_impact"),
}
MAX_SERIES_POINTS = 240
IMPACT_WINDOW_SECONDS = 3600


def check_sections(requested: list[str] | tuple[str, ...] | None, report_type: str) -> tuple[str, ...]:
    if report_type not in DEFAULT_SECTIONS:
        raise ValueError(f"report type must be one of {sorted(DEFAULT_SECTIONS)}, got {report_type!r}")
    if not requested:
        return DEFAULT_SECTIONS[report_type]
    unknown = [s for s in requested if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r}; sections are: {', '.join(SECTIONS)}")
    return tuple(dict.fromkeys(requested))


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 3)


def task_summary(runs: list[RunRow]) -> list[dict]:
    table: dict[str, dict] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        row = table.setdefault(run.task, {"task": run.task, "runs": 0, "succeeded": 0, "failed": 0, "canceled": 0, "dry_runs": 0,
                                          "duration_p50_s": None, "duration_p95_s": None, "bytes_freed": 0, "files_processed": 0})
        if run.status not in ("SUCCESS", "FAILURE", "CANCELED"):
            continue
        if run.dry_run:
            row["dry_runs"] += 1
            continue
        row["runs"] += 1
        row[{"SUCCESS": "succeeded", "FAILURE": "failed", "CANCELED": "canceled"}[run.status]] += 1
        row["bytes_freed"] += run.bytes_freed
        row["files_processed"] += run.files_processed
        if run.duration is not None:
            durations[run.task].append(run.duration)
    for task, row in table.items():
        row["duration_p50_s"] = percentile(durations[task], 50)
        row["duration_p95_s"] = percentile(durations[task], 95)
    return sorted(table.values(), key=lambda r: r["task"])


def totals(tasks: list[dict]) -> dict:
    keys = ("runs", "succeeded", "failed", "canceled", "dry_runs", "bytes_freed", "files_processed")
    return {k: sum(t[k] for t in tasks) for k in keys}


def metric_stats(points: list[HealthPoint], metric: str) -> dict:
    values = [p.values[metric] for p in points if metric in p.values]
    if not values:
        return {"samples": 0, "min": None, "mean": None, "max": None, "last": None}
    return {"samples": len(values), "min": round(min(values), 3), "mean": round(statistics.fmean(values), 3),
            "max": round(max(values), 3), "last": round(values[-1], 3)}


def _downsample(series: list[tuple[float, float]]) -> list[list[float]]:
    step = max(1, math.ceil(len(series) / MAX_SERIES_POINTS))
    return [[round(t, 1), round(v, 3)] for t, v in series[::step]]


def resources(current: list[HealthPoint], previous: list[HealthPoint]) -> dict:
    out = {}
    for metric in RESOURCE_METRICS:
        series = [(p.timestamp, p.values[metric]) for p in current if metric in p.values]
        out[metric] = {"current": metric_stats(current, metric), "previous": metric_stats(previous, metric), "series": _downsample(series)}
    return out


def failures(runs: list[RunRow]) -> list[dict]:
    return [
        {"run_id": r.run_id, "task": r.task, "status": r.status, "started": _iso(r.start or r.created), "error": r.error,
         "error_type": r.error_type, "dry_run": r.dry_run}
        for r in runs if r.status in ("FAILURE", "CANCELED")
    ]


def error_patterns(runs: list[RunRow]) -> list[dict]:
    """Failures grouped by task and error type, most frequent first."""
    groups: dict[tuple[str, str], dict] = {}
    for run in runs:
        if run.status not in ("FAILURE", "CANCELED"):
            continue
        group = groups.setdefault((run.task, run.error_type), {"task": run.task, "error_type": run.error_type, "count": 0,
                                                               "first_seen": _iso(run.created), "last_seen": "", "example": run.error})
        group["count"] += 1
        group["last_seen"] = _iso(run.created)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["task"], g["error_type"]))


def efficiency(tasks: list[dict], runs: list[RunRow]) -> dict:
    minutes = sum(r.duration for r in runs if r.duration is not None and not r.dry_run and r.status in ("SUCCESS", "FAILURE", "CANCELED")) / 60.0
    freed = sum(t["bytes_freed"] for t in tasks)
    return {"bytes_freed": freed, "maintenance_minutes": round(minutes, 3),
            "bytes_freed_per_minute": round(freed / minutes, 1) if minutes > 0 else None}


def effectiveness(tasks: list[dict], runs: list[RunRow]) -> list[dict]:
    minutes: dict[str, float] = defaultdict(float)
    for run in runs:
        if run.duration is not None and not run.dry_run and run.status in ("SUCCESS", "FAILURE", "CANCELED"):
            minutes[run.task] += run.duration / 60.0
    ranked = []
    for task in tasks:
        if not task["runs"]:
            continue
        spent = minutes[task["task"]]
        ranked.append({"task": task["task"], "success_rate": round(task["succeeded"] / task["runs"], 3),
                       "bytes_freed": task["bytes_freed"], "minutes": round(spent, 3),
                       "bytes_freed_per_minute": round(task["bytes_freed"] / spent, 1) if spent > 0 else 0.0})
    ranked.sort(key=lambda r: (-r["bytes_freed_per_minute"], -r["success_rate"], r["task"]))
    return [{"rank": i + 1, **row} for i, row in enumerate(ranked)]


def health_trends(points: list[HealthPoint]) -> list[dict]:
    days: dict[str, list[float]] = defaultdict(list)
    for point in points:
        if "health_score" in point.values:
            days[_day(point.timestamp)].append(point.values["health_score"])
    return [{"day": d, "samples": len(v), "mean": round(statistics.fmean(v), 2), "min": round(min(v), 2)} for d, v in sorted(days.items())]


def benchmarks(runs: list[RunRow]) -> list[dict]:
    per_task: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.status == "SUCCESS" and not run.dry_run and run.duration is not None:
            per_task[run.task].append(run.duration)
    return [{"task": t, "runs": len(d), "p50_s": percentile(d, 50), "p95_s": percentile(d, 95), "max_s": round(max(d), 3),
             "mean_s": round(statistics.fmean(d), 3)} for t, d in sorted(per_task.items())]


def resource_usage(points: list[HealthPoint], limits: dict[str, float | None]) -> list[dict]:
    rows = []
    for metric in RESOURCE_METRICS:
        series = [(p.timestamp, p.values[metric]) for p in points if metric in p.values]
        trend = trends.linear_trend(metric, series, limits.get(metric))
        rows.append({"metric": metric, **metric_stats(points, metric),
                     "slope_per_day": trend.slope_per_day if trend else None,
                     "days_until_limit": trend.days_until_limit if trend else None, "limit": limits.get(metric)})
    return rows


def optimization_impact(runs: list[RunRow], points: list[HealthPoint]) -> list[dict]:
    """Health and resources just before each maintenance run started and just after it ended."""
    rows = []
    for run in runs:
        if run.task == "system_health_check" or run.dry_run or run.status != "SUCCESS" or not (run.start and run.end):
            continue
        before = _nearest(points, run.start, before=True)
        after = _nearest(points, run.end, before=False)
        if before is None or after is None:
            continue
        row = {"run_id": run.run_id, "task": run.task, "started": _iso(run.start)}
        for metric in RESOURCE_METRICS:
            if metric in before.values and metric in after.values:
                row[f"{metric}_before"] = before.values[metric]
                row[f"{metric}_after"] = after.values[metric]
                row[f"{metric}_change"] = round(after.values[metric] - before.values[metric], 3)
        rows.append(row)
    return rows


def _nearest(points: list[HealthPoint], moment: float, before: bool) -> HealthPoint | None:
    if before:
        candidates = [p for p in points if moment - IMPACT_WINDOW_SECONDS <= p.timestamp <= moment]
        return candidates[-1] if candidates else None
    candidates = [p for p in points if moment <= p.timestamp <= moment + IMPACT_WINDOW_SECONDS]
    return candidates[0] if candidates else None


def recommendations(runs: list[RunRow], points: list[HealthPoint], limits: dict[str, float | None], extra: list[dict] | None = None) -> list[dict]:
    series = {m: [(p.timestamp, p.values[m]) for p in points if m in p.values] for m in HEALTH_METRICS}
    found = [t for m in RESOURCE_METRICS if (t := trends.linear_trend(m, series[m], limits.get(m)))]
    anomalies = [a for m in ("health_score", "disk_percent", "memory_percent") for a in trends.robust_anomalies(m, series[m])]
    rates = trends.failure_rates([(r.task, r.status == "SUCCESS") for r in runs if r.status in ("SUCCESS", "FAILURE", "CANCELED") and not r.dry_run])
    advice = trends.recommendations(found, anomalies, rates) + list(extra or [])
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(advice, key=lambda r: order.get(r["severity"], 3))


def build_report(report_type: str, period: tuple[float, float], previous: tuple[float, float], label: str,
                 runs: list[RunRow], previous_points: list[HealthPoint], points: list[HealthPoint],
                 sections: tuple[str, ...], limits: dict[str, float | None], extra_recommendations: list[dict] | None = None,
                 generated_at: float | None = None) -> dict:
    tasks = task_summary(runs)
    report: dict = {
        "schema": SCHEMA,
        "type": report_type,
        "period": {"start": _iso(period[0]), "end": _iso(period[1]), "label": label},
        "previous_period": {"start": _iso(previous[0]), "end": _iso(previous[1])},
        "generated_at": _iso(generated_at or datetime.now(timezone.utc).timestamp()),
        "sections": list(sections),
        "tasks": tasks,
        "totals": totals(tasks),
    }
    builders = {
        "resources": lambda: resources(points, previous_points),
        "failures": lambda: failures(runs),
        "recommendations": lambda: recommendations(runs, points, limits, extra_recommendations),
        "efficiency": lambda: efficiency(tasks, runs),
        "health_trends": lambda: health_trends(points),
        "effectiveness": lambda: effectiveness(tasks, runs),
        "benchmarks": lambda: benchmarks(runs),
        "resource_usage": lambda: resource_usage(points, limits),
        "error_patterns": lambda: error_patterns(runs),
        "optimization_impact": lambda: optimization_impact(runs, points),
    }
    for section in sections:
        if section in builders:
            report[section] = builders[section]()
    return report


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(TIMEZONE)).date().isoformat()
