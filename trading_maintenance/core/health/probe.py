"""The cheap probe: runs every minute at any hour and answers within a second.

It measures what can fail between two full health checks and hurt the platform at once: Redis and
the trading database answering, the disk of the data root and memory filling up. No CPU sampling
(that takes a second of waiting by itself) and no service or market-data checks. Components are
scored exactly as the full check scores them, so a probe and a full check of the same platform
agree on what they both measure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import psutil

from trading_maintenance.core.health import scoring as health
from trading_maintenance.core.health.cgroup import read_cgroup

PROBE_DEADLINE_SECONDS = 0.8  # the stores together; disk and memory are local reads
# The same latency limits as the full check, so both score a store alike.
REDIS_WARN_MS, REDIS_RED_MS = 50.0, 500.0
DATABASE_WARN_MS, DATABASE_RED_MS = 200.0, 2000.0


@dataclass(frozen=True)
class StoreAnswer:
    reachable: bool
    latency_ms: float | None
    error: str = ""


@dataclass(frozen=True)
class ProbeMeasurement:
    memory_percent: float
    memory_source: str
    disk_path: str
    disk_percent: float
    redis: StoreAnswer
    database: StoreAnswer


def ask_stores(checks: Mapping[str, Callable[[], None]], deadline_seconds: float = PROBE_DEADLINE_SECONDS,
               describe_error: Callable[[BaseException], str] = str) -> dict[str, StoreAnswer]:
    """Run each check at the same time; one that has not answered by the deadline is unreachable.

    A check is a callable that returns when the store answered and raises when it did not. A check
    still hanging at the deadline is left to its own timeout in a background thread: the probe
    never waits for it.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="health-probe")
    started = time.perf_counter()

    def timed(check: Callable[[], None]) -> float:
        began = time.perf_counter()
        check()
        return (time.perf_counter() - began) * 1000

    futures = {name: pool.submit(timed, check) for name, check in checks.items()}
    wait(futures.values(), timeout=deadline_seconds)
    pool.shutdown(wait=False, cancel_futures=True)
    answers = {}
    for name, future in futures.items():
        if not future.done():
            waited = time.perf_counter() - started
            answers[name] = StoreAnswer(False, None, f"no answer within {waited:.1f} s")
        elif future.exception() is not None:
            answers[name] = StoreAnswer(False, None, describe_error(future.exception()))
        else:
            answers[name] = StoreAnswer(True, future.result())
    return answers


def measure_memory(cgroup_root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup") -> tuple[float, str]:
    """Percent of memory used against the container's limit when it has one, the host's otherwise."""
    cgroup = read_cgroup(cgroup_root, proc_cgroup)
    if cgroup is not None and cgroup.memory_percent is not None:
        return round(cgroup.memory_percent, 2), f"cgroup {cgroup.version} {cgroup.memory_group}"
    return float(psutil.virtual_memory().percent), "host"


def measure_disk(data_dir: str | Path) -> tuple[str, float]:
    """(the existing folder measured, percent used) of the filesystem holding the data root."""
    path = Path(data_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    return str(path), float(psutil.disk_usage(os.fspath(path)).percent)


def score_probe(measurement: ProbeMeasurement, memory_warning: float, disk_warning: float,
                memory_sustained: bool, sustained_minutes: int) -> health.HealthReport:
    """The probe's components scored like the full check's, combined with the same weights and caps."""
    return health.combine([
        health.sustained_component("memory", measurement.memory_percent, memory_warning, memory_sustained, sustained_minutes),
        health.utilisation_component("disk", measurement.disk_percent, disk_warning, label=f"disk of {measurement.disk_path}"),
        health.latency_component("redis", measurement.redis.reachable, measurement.redis.latency_ms,
                                 measurement.redis.error, warn_ms=REDIS_WARN_MS, red_ms=REDIS_RED_MS),
        health.latency_component("database", measurement.database.reachable, measurement.database.latency_ms,
                                 measurement.database.error, warn_ms=DATABASE_WARN_MS, red_ms=DATABASE_RED_MS),
    ])


def component_statuses(report: health.HealthReport) -> dict[str, str]:
    return {component.name: component.status for component in report.components}


def changed_components(previous: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Components whose status differs from the previous probe's, e.g. `redis green -> red`.

    With no previous probe (the first one after a deployment) every component counts as having
    been green, so a platform already in trouble gets its full check at once.
    """
    return [
        f"{name} {previous.get(name, health.GREEN)} -> {status}"
        for name, status in sorted(current.items())
        if status != previous.get(name, health.GREEN)
    ]


FULL_CHECK_MIN_GAP_SECONDS = 300  # a flapping component starts one full check per 5 minutes, not one a minute


def full_check_due(changed: list[str], pending: bool, last_requested_at: float | None, now: float,
                   min_gap_seconds: float = FULL_CHECK_MIN_GAP_SECONDS) -> tuple[bool, bool]:
    """(request a full health check now, a change is still waiting for one).

    A change seen within the gap after the last requested check is kept pending and gets its check
    when the gap is over, so no change goes unchecked and a flapping store cannot flood the queue.
    """
    wanted = bool(changed) or pending
    if not wanted:
        return False, False
    if last_requested_at is not None and now - last_requested_at < min_gap_seconds:
        return False, True
    return True, False
