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

from trading_maintenance.core.market_data.batch import consolidate_batch
from trading_maintenance.core.market_data.io import find_stale_temporaries, quarantine_file
from trading_maintenance.core.market_data.layout import MisnamedEntry, archive_dir_for, archive_fspath, quarantine_dir_for, scan_daily_files
from trading_maintenance.core.market_data.manifest import SourcePlan, plan_sources
from trading_maintenance.core.market_data.months import MonthSessions, month_sessions
from trading_maintenance.core.market_data.quality import expected_by_day, manifest_day_rows, quality_from_rows
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

    results: list[GroupResult] = []
    if max_workers <= 1:
        plans = {key: plan(key) for key in groups}
        results = [unchanged_result(*key, month, archive_dir, p, sessions) for key, p in sorted(plans.items()) if p.unchanged]
        results += [r for batch in plan_batches({k: p for k, p in plans.items() if not p.unchanged}, max_workers, batch_groups) for r in run(batch)]
    else:
        # batches start while the rest of the month is still being planned (planning is Python,
        # consolidating mostly polars and I/O, which release the GIL)
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="market-data") as pool:
            futures = [pool.submit(run, batch) for batch in planned_batches(groups, plan, results, month, archive_dir, sessions, max_workers, batch_groups)]
            results += [r for future in futures for r in future.result()]
    results.sort(key=lambda r: (r.timeframe, r.symbol))
    return MonthResult(month, results, time.perf_counter() - started, dry_run, misnamed_report, [str(p) for p in stale])


def unchanged_result(symbol: str, timeframe: str, month: str, archive_dir: Path, plan: SourcePlan, sessions: MonthSessions) -> GroupResult:
    """A group whose archive is verified against every daily file it has: counts and quality from
    the manifest, nothing read or written."""
    manifest = plan.manifest
    reused = [entry for _, entry in plan.reused]
    rows = manifest["archive"]["rows"]
    return GroupResult(
        symbol,
        timeframe,
        month,
        archive_fspath(archive_dir, symbol, timeframe, month),
        files_reused=len(reused),
        rows_reused=sum(e["rows"] for e in reused),
        rows_out=rows,
        previous_archive_rows=rows,
        quality=quality_from_rows(
            manifest_day_rows(manifest["days"]), timeframe, expected_by_day(timeframe, sessions), sum(e["outside_file_date"] for e in reused)
        ),
        verified=True,
        unchanged=True,
    )


def quarantine_misnamed(entry: MisnamedEntry, market_data_dir: Path, quarantine_dir: Path, dry_run: bool) -> dict:
    """Move an entry that is not a daily file out of the dated layout (a link moved as a link)."""
    report = {"path": str(entry.path), "reason": entry.reason, "moved_to": ""}
    if not dry_run:
        try:
            report["moved_to"] = str(quarantine_file(entry.path, market_data_dir, quarantine_dir, entry.reason))
        except OSError as exc:
            report["moved_to"] = f"not moved: {type(exc).__name__}: {exc.strerror}"
    return report


def planned_batches(
    groups: dict[tuple[str, str], list],
    plan,
    unchanged: list[GroupResult],
    month: str,
    archive_dir: Path,
    sessions: MonthSessions,
    max_workers: int,
    batch_groups: int,
):
    """Plan the groups in (symbol, timeframe) order and yield batches of one timeframe as they fill,
    so consolidating starts before planning ends; unchanged groups' results go to `unchanged`.

    When every group has something to read (a first run), the batches are as many as plan_batches
    would cut (at most batch_groups groups each), rounded up to a multiple of max_workers, and of
    equal size, so no worker is left alone with a last batch while the others wait. When few have
    (a re-run), what is pending is also cut every 1/(2 x max_workers) of the groups planned, so the
    workers share it."""
    keys = sorted(groups)
    workers = max(1, max_workers)
    largest = max(1, min(batch_groups, math.ceil(len(keys) / (2 * workers))))
    count = max(1, math.ceil(len(keys) / largest))
    if len(keys) // (math.ceil(count / workers) * workers) >= 2:  # never batches of one where plan_batches has none
        count = math.ceil(count / workers) * workers
    sizes = [len(keys) // count + (i < len(keys) % count) for i in range(count)]
    stride = max(1, math.ceil(len(keys) / (2 * workers)))
    pending: dict[str, list] = {}
    cut = changed = 0
    for n, key in enumerate(keys, 1):
        p = plan(key)
        if p.unchanged:
            unchanged.append(unchanged_result(*key, month, archive_dir, p, sessions))
        else:
            changed += 1
            items = pending.setdefault(key[1], [])
            items.append((*key, p))
            if len(items) >= sizes[min(cut, count - 1)]:
                cut += 1
                yield pending.pop(key[1])
        if n % stride == 0:
            if 2 * changed < stride:  # few groups to read: what is pending goes now
                for tf in [tf for tf, items in pending.items() if len(items) >= 2]:
                    yield pending.pop(tf)
            changed = 0
    for tf in sorted(pending):
        yield pending[tf]


def plan_batches(
    plans: dict[tuple[str, str], SourcePlan], max_workers: int = 4, batch_groups: int = 16
) -> list[list[tuple[str, str, SourcePlan]]]:
    """Groups cut into batches of one timeframe, at most batch_groups symbol-months each, small
    enough that every worker gets several batches."""
    by_tf: dict[str, list] = {}
    for (sym, tf), plan in sorted(plans.items()):
        by_tf.setdefault(tf, []).append((sym, tf, plan))
    total = sum(len(v) for v in by_tf.values())
    size = max(1, min(batch_groups, math.ceil(total / max(1, 2 * max_workers))))
    return [items[i:i + size] for items in by_tf.values() for i in range(0, len(items), size)]
