"""What the adaptive maintenance sensor does with the analysis (pure decisions).

Each finding asks for one task; a decision launches it (one run key per finding and cooldown
window) or says why not. Heavy tasks never start while NYSE's regular session is open.
"""

from __future__ import annotations

from dataclasses import dataclass

from trading_maintenance.core.intelligence.schedule_advice import HEAVY_TASKS
from trading_maintenance.core.intelligence.trends import Trend

DISK_FULL_PERCENT = 100.0
DISK_FULL_HORIZON_DAYS = 1.0
REDIS_FRAGMENTATION_LIMIT = 1.5
REDIS_MEMORY_PERCENT_LIMIT = 85.0
BASE_PRIORITY = {"emergency_maintenance": 50, "data_cleanup": 10, "log_rotation": 10, "cache_cleanup": 5, "backup": 0}


@dataclass(frozen=True)
class Finding:
    name: str  # e.g. "disk_full_soon"
    task: str
    reason: str


@dataclass(frozen=True)
class Decision:
    finding: Finding
    launch: bool
    reason: str
    run_key: str = ""


def disk_finding(trend: Trend | None) -> Finding | None:
    """Disk predicted full (100 %) within 24 hours at its current growth rate."""
    if trend is None or trend.slope_per_day <= 0:
        return None
    days = (DISK_FULL_PERCENT - trend.latest) / trend.slope_per_day
    if days > DISK_FULL_HORIZON_DAYS:
        return None
    return Finding("disk_full_soon", "data_cleanup",
                   f"disk {trend.latest:g}% rising {trend.slope_per_day:+.2f} points/day: full in {max(days, 0) * 24:.1f} h")


def redis_finding(info: dict | None) -> Finding | None:
    """Redis memory fragmented or close to its maxmemory."""
    if not info:
        return None
    fragmentation = float(info.get("mem_fragmentation_ratio") or 0)
    used, limit = float(info.get("used_memory") or 0), float(info.get("maxmemory") or 0)
    # A tiny Redis always looks fragmented (allocator overhead dominates); judge it above 64 MB only.
    if fragmentation > REDIS_FRAGMENTATION_LIMIT and used > 64 * 1024 * 1024:
        return Finding("redis_fragmented", "cache_cleanup", f"Redis fragmentation {fragmentation:.2f} > {REDIS_FRAGMENTATION_LIMIT}")
    if limit > 0 and used / limit * 100 > REDIS_MEMORY_PERCENT_LIMIT:
        return Finding("redis_memory_high", "cache_cleanup", f"Redis memory {used / limit:.0%} of maxmemory > {REDIS_MEMORY_PERCENT_LIMIT:g}%")
    return None


def failed_heavy_findings(last_status: dict[str, tuple[str, str]]) -> list[Finding]:
    """A heavy task whose latest run failed is retried once (its run key is the failed run's id)."""
    return [Finding(f"retry:{run_id}", task, f"{task}'s latest run {run_id[:8]} failed")
            for task, (status, run_id) in sorted(last_status.items()) if task in HEAVY_TASKS and status == "FAILURE"]


def decide(findings: list[Finding], market_open: bool, busy_tasks: set[str], last_launch: dict[str, float], now: float,
           cooldown_seconds: float) -> list[Decision]:
    """One decision per finding: launch, or the reason it waits (market hours, a run in progress, cooldown)."""
    decisions = []
    for finding in findings:
        window = int(now // cooldown_seconds) if cooldown_seconds > 0 else int(now)
        run_key = f"adaptive:{finding.name}" if finding.name.startswith("retry:") else f"adaptive:{finding.name}:{window}"
        if finding.task in HEAVY_TASKS and market_open:
            decisions.append(Decision(finding, False, f"{finding.reason}; {finding.task} is heavy and NYSE is open: waiting for the close"))
        elif finding.task in busy_tasks:
            decisions.append(Decision(finding, False, f"{finding.reason}; a {finding.task} run is already queued or running"))
        elif now - last_launch.get(finding.name, float("-inf")) < cooldown_seconds:
            decisions.append(Decision(finding, False, f"{finding.reason}; launched {int(now - last_launch[finding.name])}s ago, cooling down"))
        else:
            decisions.append(Decision(finding, True, f"{finding.reason}: launching {finding.task}", run_key))
    return decisions


def priority(task: str, findings: list[Finding], market_open: bool) -> int:
    """Run-queue priority (dagster/priority, higher first) following the analysis: what relieves a
    finding goes first; a backup waits while disk is short (it writes gigabytes); heavy work waits
    while the market is open."""
    value = BASE_PRIORITY.get(task, 0)
    tasks_needed = {f.task for f in findings}
    if task in tasks_needed:
        value += 20
    if any(f.name == "disk_full_soon" for f in findings) and task in ("backup", "trading_data_maintenance"):
        value -= 20
    if market_open and task in HEAVY_TASKS:
        value -= 30
    return value
