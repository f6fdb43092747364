"""Consolidating a month of the collector's daily parquet files into verified monthly archives.

Rules:
- A duplicate is a repeated (symbol, timeframe, timestamp); the last written row wins, where the
  order of writing is: the existing archive first, then daily files by date, then row order inside a
  file. The result does not depend on the order in which files arrived on disk.
- A re-run reads only what changed since the archive was verified (see manifest.py): new and
  rewritten daily files, and the unchanged ones whose timestamps overlap them. A month where
  nothing changed is neither read nor written.
- Misnamed entries of the month's folders are quarantined with their reason; writers' temporary
  files are never read; those of crashed consolidations are removed by the month's next run.
- A file that cannot be read or normalised is quarantined, never fatal. Bars failing sanity are
  kept and counted, never changed.
- Every archive is verified before it replaces the previous one (archive_write.py); when the
  deduplicated sources equal the verified archive in place (files delivered again with rows it
  holds), that archive is kept and only its manifest renewed. A dry run reads, counts and
  reports, and changes nothing.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from trading_maintenance.core.common.gc_pause import paused_gc
from trading_maintenance.core.market_data.batch import consolidate_batch
from trading_maintenance.core.market_data.group import manifest_result
from trading_maintenance.core.market_data.io import find_stale_temporaries, quarantine_file
from trading_maintenance.core.market_data.layout import MisnamedEntry, archive_dir_for, archive_fspath, quarantine_dir_for, scan_daily_files
from trading_maintenance.core.market_data.manifest import SourcePlan, plan_sources
from trading_maintenance.core.market_data.months import MonthSessions, month_sessions
from trading_maintenance.core.market_data.results import GroupResult, MonthResult


def consolidate_month(
    market_data_dir: str | Path,
    month: str,
    archive_dir: str | Path | None = None,
    quarantine_dir: str | Path | None = None,
    max_workers: int = 4,
    dry_run: bool = False,
    as_of: datetime | None = None,
    calendar_name: str = "XNYS",
    batch_groups: int = 16,
) -> MonthResult:
    """Consolidate every (symbol, timeframe) of a month: batches of up to batch_groups symbol-months,
    max_workers batches at a time.

    Memory is bounded by max_workers x batch_groups symbol-months (batch_groups=1: one symbol-month
    per worker), never by the size of the data set: results carry counts, never frames.
    """
    # the month's listing, manifests and plans are tens of thousands of small objects in no cycle:
    # the collections they set off walked the whole heap (~45 ms each, ~10 % of a re-run)
    with paused_gc():
        return _consolidate_month(market_data_dir, month, archive_dir, quarantine_dir, max_workers, dry_run, as_of, calendar_name, batch_groups)


def _consolidate_month(
    market_data_dir: str | Path,
    month: str,
    archive_dir: str | Path | None,
    quarantine_dir: str | Path | None,
    max_workers: int,
    dry_run: bool,
    as_of: datetime | None,
    calendar_name: str,
    batch_groups: int,
) -> MonthResult:
    started = time.perf_counter()
    market_data_dir = Path(market_data_dir)
    archive_dir = Path(archive_dir) if archive_dir else archive_dir_for(market_data_dir)
    quarantine_dir = Path(quarantine_dir) if quarantine_dir else quarantine_dir_for(market_data_dir)
    sessions = month_sessions(month, as_of, calendar_name)
    stale = find_stale_temporaries(archive_dir, month)
    if not dry_run:
        for path in stale:
            path.unlink(missing_ok=True)
    groups, misnamed = scan_daily_files(market_data_dir, month)
    misnamed_report = [quarantine_misnamed(entry, market_data_dir, quarantine_dir, dry_run) for entry in misnamed]

    def plan(key: tuple[str, str]) -> SourcePlan:
        return plan_sources(archive_fspath(archive_dir, *key, month), groups[key], *key, month, calendar_name)

    def run(batch):
        return consolidate_batch(batch, month, market_data_dir, archive_dir, quarantine_dir, sessions, dry_run, calendar_name)

    # the whole month is planned before any batch starts: planning is Python (manifests parsed and
    # checked) and, run beside the batches, it and they fought for the GIL (a re-run's planning took
    # 80-140 ms instead of 33, its CPU 1.0 instead of 0.78 s); a first run plans in a few ms
    results: list[GroupResult] = []
    to_read: dict[tuple[str, str], SourcePlan] = {}
    for key in sorted(groups):
        group_plan = plan(key)
        if group_plan.unchanged:  # its manifest is let go at once: a month of thousands of groups is not held
            results.append(unchanged_result(*key, month, archive_dir, group_plan, sessions))
        else:
            to_read[key] = group_plan
    batches = plan_batches(to_read, max_workers, batch_groups)
    del to_read
    if max_workers <= 1 or len(batches) <= 1:
        results += [r for batch in batches for r in run(batch)]
    else:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(batches)), thread_name_prefix="market-data") as pool:
            results += [r for batch_results in pool.map(run, batches) for r in batch_results]
    results.sort(key=lambda r: (r.timeframe, r.symbol))
    return MonthResult(month, results, time.perf_counter() - started, dry_run, misnamed_report, [str(p) for p in stale])


def unchanged_result(symbol: str, timeframe: str, month: str, archive_dir: Path, plan: SourcePlan, sessions: MonthSessions) -> GroupResult:
    """A group whose archive is verified against every daily file it has: counts and quality from
    the manifest, nothing read or written."""
    result = manifest_result(symbol, timeframe, month, archive_fspath(archive_dir, symbol, timeframe, month), plan, sessions)
    result.verified = result.unchanged = True
    return result


def quarantine_misnamed(entry: MisnamedEntry, market_data_dir: Path, quarantine_dir: Path, dry_run: bool) -> dict:
    """Move an entry that is not a daily file out of the dated layout (a link moved as a link)."""
    report = {"path": str(entry.path), "reason": entry.reason, "moved_to": ""}
    if not dry_run:
        try:
            report["moved_to"] = str(quarantine_file(entry.path, market_data_dir, quarantine_dir, entry.reason))
        except OSError as exc:
            report["moved_to"] = f"not moved: {type(exc).__name__}: {exc.strerror}"
    return report


def plan_batches(
    plans: dict[tuple[str, str], SourcePlan], max_workers: int = 4, batch_groups: int = 16
) -> list[list[tuple[str, str, SourcePlan]]]:
    """The groups to read cut into batches of one timeframe: of equal size (give or take one group),
    at most batch_groups each, about two per worker, two or more groups each where the groups allow
    (a batch of one takes the careful per-group path), and as many as a multiple of max_workers
    where that keeps both, so no worker is left alone with a last batch while the others wait."""
    by_tf: dict[str, list] = {}
    for (sym, tf), plan in sorted(plans.items()):
        by_tf.setdefault(tf, []).append((sym, tf, plan))
    workers = max(1, max_workers)
    batches = []
    for items in by_tf.values():
        n, most = len(items), max(1, batch_groups)
        count = math.ceil(n / min(most, max(1, math.ceil(n / (2 * workers)))))
        for multiple in (math.ceil(count / workers) * workers, count // workers * workers):  # the nearest, up then down
            if multiple and n // multiple >= 2 and math.ceil(n / multiple) <= most:
                count = multiple
                break
        count = max(1, min(count, n // 2), math.ceil(n / most))  # no batch of one where two groups can share one
        start = 0
        for i in range(count):
            size = n // count + (i < n % count)
            batches.append(items[start:start + size])
            start += size
    return batches
