"""The daily maintenance report: what ran, how health looked, what was alerted (pure assembly)."""

from __future__ import annotations

import statistics


def summarise_day(day: str, runs: list[dict], health_scores: list[float], alerts: list[dict], latest_results: dict[str, dict]) -> dict:
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run["status"]] = by_status.get(run["status"], 0) + 1
    failed = [r for r in runs if r["status"] == "FAILURE"]
    health = None
    if health_scores:
        health = {"checks": len(health_scores), "min": min(health_scores), "mean": round(statistics.fmean(health_scores), 1), "max": max(health_scores)}
    severities: dict[str, int] = {}
    for alert in alerts:
        severities[alert.get("severity", "info")] = severities.get(alert.get("severity", "info"), 0) + 1
    return {
        "date": day,
        "runs": {"total": len(runs), "by_status": by_status, "failed": failed, "all": runs},
        "health": health,
        "alerts": {"total": len(alerts), "by_severity": severities, "items": alerts[:100]},
        "latest_results": latest_results,
    }


def render_markdown(report: dict) -> str:
    lines = [f"# Maintenance report {report['date']}", ""]
    runs = report["runs"]
    lines.append(f"Runs: {runs['total']} ({', '.join(f'{k} {v}' for k, v in sorted(runs['by_status'].items())) or 'none'})")
    health = report["health"]
    lines.append(
        f"Health: {health['checks']} checks, score min {health['min']}, mean {health['mean']}, max {health['max']}" if health else "Health: no checks recorded"
    )
    lines.append(f"Alerts: {report['alerts']['total']} " + ", ".join(f"{k} {v}" for k, v in sorted(report["alerts"]["by_severity"].items())))
    if runs["failed"]:
        lines += ["", "## Failed runs", "", "| job | run | started |", "|---|---|---|"]
        lines += [f"| {r['job']} | {r['run_id'][:8]} | {r['started']} |" for r in runs["failed"]]
    lines += ["", "## Runs", "", "| job | status | started | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['job']} | {r['status']} | {r['started']} | {r['seconds']} |" for r in runs["all"]]
    return "\n".join(lines)
