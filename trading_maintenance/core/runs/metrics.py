"""Per-task run figures over a time window: counts, success rate, duration percentiles, work done."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Metadata keys whose numbers count files a run processed (deleted, compressed, rotated, scanned...).
FILE_COUNT_KEY = re.compile(r"^(?:[a-z]+_)*files_(?:deleted|compressed|scanned|processed|archived|rotated)$|^logs_rotated$")
BYTES_FREED_KEY = "bytes_freed"


@dataclass(frozen=True)
class FinishedRun:
    created_at: float
    status: str  # SUCCESS, FAILURE, CANCELED, or an unfinished status
    duration_s: float | None
    bytes_freed: int = 0
    files_processed: int = 0


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (0 < fraction <= 1) of values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def work_done(step_metadata: Iterable[tuple[str, Mapping[str, object]]]) -> tuple[int, int]:
    """(bytes freed, files processed) from (step key, metadata) pairs of a run's events.

    An asset's step reports the same numbers on its output and its materialization; each key counts
    once per step.
    """
    seen: dict[tuple[str, str], int] = {}
    for step_key, metadata in step_metadata:
        for key, value in metadata.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key == BYTES_FREED_KEY or FILE_COUNT_KEY.match(key):
                seen.setdefault((step_key, key), int(value))
    bytes_freed = sum(v for (_, key), v in seen.items() if key == BYTES_FREED_KEY)
    files = sum(v for (_, key), v in seen.items() if key != BYTES_FREED_KEY)
    return bytes_freed, files


def window_figures(runs: Iterable[FinishedRun], now: float, days: int) -> dict:
    since = now - days * 86400
    inside = [run for run in runs if run.created_at >= since]
    succeeded = sum(1 for run in inside if run.status == "SUCCESS")
    failed = sum(1 for run in inside if run.status in ("FAILURE", "CANCELED"))
    durations = [run.duration_s for run in inside if run.duration_s is not None and run.status in ("SUCCESS", "FAILURE", "CANCELED")]
    finished = succeeded + failed
    return {
        "days": days,
        "runs": len(inside),
        "succeeded": succeeded,
        "failed": failed,
        "success_rate": round(succeeded / finished, 4) if finished else None,
        "duration_p50_s": _rounded(percentile(durations, 0.50)),
        "duration_p95_s": _rounded(percentile(durations, 0.95)),
        "duration_max_s": _rounded(max(durations) if durations else None),
        "bytes_freed": sum(run.bytes_freed for run in inside),
        "files_processed": sum(run.files_processed for run in inside),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
