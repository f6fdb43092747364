"""Consolidating one symbol-timeframe-month, file by file: the careful path.

The batch path (batch.py) handles the common case faster; anything unusual (an old schema, an
unreadable file, a file vanishing) comes here, which normalises and quarantines. Both give equal
archives, and both count the same way (see summarise).
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from trading_maintenance.core.market_data.archive_write import keep_equal_archive, recorded_archive_stat, write_verified
from trading_maintenance.core.market_data.day_digest import day_digests
from trading_maintenance.core.market_data.io import (
    UnreadableFile,
    bytes_sha256,
    file_sha256,
    file_stat,
    quarantine_file,
    read_market_file,
    read_whole,
    scan_buffers,
)
from trading_maintenance.core.market_data.layout import KEY, DailyFile, archive_path
from trading_maintenance.core.market_data.manifest import SourcePlan
from trading_maintenance.core.market_data.months import MonthSessions
from trading_maintenance.core.market_data.quality import day_entries, expected_by_day, per_day_counts, quality_from_manifest_days, quality_from_rows
from trading_maintenance.core.market_data.results import GroupResult


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def source_entry(f: DailyFile, stat: tuple[int, int], sha256: str, rows: int, first_us: int | None, last_us: int | None) -> dict:
    """A manifest entry for a daily file read this run (outside_file_date is set by summarise)."""
    return {"name": f.name, "size": stat[0], "mtime_ns": stat[1], "sha256": sha256, "rows": rows, "first_us": first_us, "last_us": last_us}


def manifest_result(symbol: str, timeframe: str, month: str, archive: str, plan: SourcePlan, sessions: MonthSessions) -> GroupResult:
    """A group's result as its archive's trusted manifest tells it, nothing read: rows, the sources
    reused and the quality of the manifest's days (an unchanged group, or one whose rows read were
    proved already archived)."""
    manifest = plan.manifest
    reused = [entry for _, entry in plan.reused]
    rows = manifest["archive"]["rows"]
    return GroupResult(
        symbol,
        timeframe,
        month,
        archive,
        files_reused=len(reused),
        rows_reused=sum(e["rows"] for e in reused),
        rows_out=rows,
        previous_archive_rows=rows,
        quality=quality_from_manifest_days(manifest["days"], timeframe, sessions, sum(e["outside_file_date"] for e in reused)),
    )


def file_ranges(frame: pl.DataFrame) -> dict[date, tuple[int, int]]:
    """(first, last) timestamp in epoch µs of each `_file_date` of frame's rows read from files."""
    ranges = (
        frame.lazy()
        .filter(pl.col("_file_date").is_not_null())
        .group_by("_file_date")
        .agg(pl.col("timestamp").dt.epoch("us").min().alias("lo"), pl.col("timestamp").dt.epoch("us").max().alias("hi"))
        .collect()
    )
    return {d: (lo, hi) for d, lo, hi in ranges.iter_rows()}


def summarise(result: GroupResult, plan: SourcePlan, day_rows: list[dict], read_sources: list[dict], timeframe: str, sessions: MonthSessions) -> list[dict]:
    """Fill result's quality and counts from the per-day rows of the deduplicated month; returns the
    manifest's sources (those read, with their outside_file_date, and those reused).

    duplicates_removed counts repeated keys among the rows read this run; a row read again that
    replaces its own earlier copy in the archive is counted in archive_rows_replaced instead."""
    outside_by_date: dict[date, int] = {}
    distinct_read = 0
    for r in day_rows:
        if r["_file_date"] is not None:
            distinct_read += int(r["_rows"])
            outside_by_date[r["_file_date"]] = outside_by_date.get(r["_file_date"], 0) + int(r["outside_file_date"] or 0)
    for entry in read_sources:
        entry["outside_file_date"] = outside_by_date.get(date.fromisoformat(entry["name"][:10]), 0)
    reused = [entry for _, entry in plan.reused]
    result.files_reused = len(reused)
    result.rows_reused = sum(e["rows"] for e in reused)
    result.duplicates_removed = result.rows_in - distinct_read
    result.archive_rows_replaced = distinct_read + result.previous_archive_rows - result.rows_out
    result.quality = quality_from_rows(day_rows, timeframe, expected_by_day(timeframe, sessions), sum(e["outside_file_date"] for e in reused))
    return [*read_sources, *reused]


def read_group_fast(plan: SourcePlan) -> tuple[pl.DataFrame, list[dict]] | None:
    """All of the plan's files in one multi-file scan (the common case: every file readable and in
    the current schema), widening the plan to reused sources the rows read overlap. None when
    anything is off: the caller then reads file by file.

    Each file is read whole once (read_whole): its size, mtime, hash and rows all describe the
    same bytes, so a file rewritten meanwhile no longer matches its manifest entry and is never
    deleted on the strength of this archive."""
    try:
        while True:
            ordered = plan.read
            if not ordered:
                return None
            contents = [read_whole(f.path) for f in ordered]  # stat, hash and rows of the same bytes
            stats = [st for _, st in contents]
            hashes = [bytes_sha256(data) for data, _ in contents]
            scanned = scan_buffers([data for data, _ in contents])
            del contents
            if scanned is None:
                return None
            df, lengths = scanned
            days = np.array([f.day for f in ordered], dtype="datetime64[D]")
            df = df.with_columns(pl.Series("_file_date", np.repeat(days, lengths)).cast(pl.Date))
            ranges = file_ranges(df)
            if not plan.widen(list(ranges.values())):
                break
    except Exception:  # noqa: BLE001 - any doubt: take the careful path
        return None
    sources = [
        source_entry(f, st, h, n, *ranges.get(f.day, (None, None)))
        for f, st, h, n in zip(ordered, stats, hashes, lengths)
    ]
    return df, sources


def _read_careful(plan: SourcePlan, result: GroupResult, market_data_dir: Path, quarantine_dir: Path, dry_run: bool):
    """The plan's files one by one, normalising old schemas and quarantining unreadable files;
    widened while the rows read overlap reused sources. Returns [(file, frame)] in writing order."""
    read: dict[Path, tuple[DailyFile, pl.DataFrame, dict]] = {}
    pending = list(plan.read)
    while pending:
        ranges = []
        for f in pending:
            try:
                stat = file_stat(f.path)
                sha256 = file_sha256(f.path)
                df, notes = read_market_file(f.path, result.symbol, result.timeframe)
            except FileNotFoundError:
                continue  # deleted meanwhile (by an earlier run's cleanup): its rows are in the archive
            except UnreadableFile as exc:
                entry = {"path": str(f.path), "reason": str(exc), "moved_to": ""}
                if not dry_run:
                    try:
                        entry["moved_to"] = str(quarantine_file(f.path, market_data_dir, quarantine_dir, str(exc)))
                    except OSError as move_exc:
                        entry["moved_to"] = f"not moved: {type(move_exc).__name__}: {move_exc.strerror}"
                result.quarantined.append(entry)
                continue
            if notes:
                result.normalised.append({"path": str(f.path), "notes": notes})
            epoch = df.select(pl.col("timestamp").dt.epoch("us").min().alias("lo"), pl.col("timestamp").dt.epoch("us").max().alias("hi")).row(0)
            first_us, last_us = (None, None) if df.height == 0 else epoch
            if df.height:
                ranges.append((first_us, last_us))
            result.bytes_before += stat[0]
            read[f.path] = (f, df, source_entry(f, stat, sha256, df.height, first_us, last_us))
        pending = plan.widen(ranges)
    return [read[f.path] for f in plan.read if f.path in read]


def consolidate_group(
    symbol: str,
    timeframe: str,
    month: str,
    plan: SourcePlan,
    market_data_dir: Path,
    archive_dir: Path,
    quarantine_dir: Path,
    sessions: MonthSessions,
    dry_run: bool = False,
    calendar_name: str = "XNYS",
) -> GroupResult:
    """Merge the existing archive (if any) with the daily files the plan reads, of one symbol and
    timeframe: the archive first (lowest priority), then the files by date.

    Never raises for bad data: unreadable files are quarantined (unless dry_run), write or
    verification failures are returned in `error`.
    """
    started = time.perf_counter()
    target = archive_path(archive_dir, symbol, timeframe, month)
    result = GroupResult(symbol, timeframe, month, str(target))
    frames: list[pl.DataFrame] = []
    previous = None  # the verified archive as decoded, kept when nothing changes
    try:
        if target.exists():
            try:
                prev, notes = read_market_file(target, symbol, timeframe)
            except UnreadableFile as exc:
                result.error = f"existing archive unreadable ({exc}); left in place, daily files kept"
                result.seconds = time.perf_counter() - started
                return result
            result.previous_archive_rows = prev.height
            if plan.manifest is not None and not notes:
                previous = prev
            result.bytes_before += target.stat().st_size
            frames.append(prev.with_columns(pl.lit(None, pl.Date).alias("_file_date")))
        fast = read_group_fast(plan)
        if fast is not None:
            combined_fast, sources = fast
            result.bytes_before += sum(s["size"] for s in sources)
            frames.append(combined_fast)
        else:
            read = _read_careful(plan, result, market_data_dir, quarantine_dir, dry_run)
            sources = [entry for _, _, entry in read]
            frames.extend(df.with_columns(pl.lit(f.day, pl.Date).alias("_file_date")) for f, df, _ in read)
        result.files_read = len(sources)
        if not frames:
            result.seconds = time.perf_counter() - started
            return result
        combined = pl.concat(frames, how="vertical", rechunk=False)
        result.rows_in = combined.height - result.previous_archive_rows
        deduped = combined.lazy().unique(subset=KEY, keep="last").sort(KEY).collect()
        del combined, frames
        result.rows_out = deduped.height
        day_rows = per_day_counts(deduped.lazy(), timeframe, sessions).collect().to_dicts()
        manifest_sources = summarise(result, plan, day_rows, sources, timeframe, sessions)
        out = deduped.drop("_file_date")
        del deduped
        manifest = (manifest_sources, calendar_name, day_entries(day_rows, None if dry_run else day_digests(out)))
        if not dry_run and not (
            previous is not None and keep_equal_archive(result, out, previous, target, recorded_archive_stat(plan.manifest), manifest)
        ):
            write_verified(result, out, target, manifest)
    except Exception as exc:  # noqa: BLE001 - one group's failure never stops the others
        result.error = error_text(exc)
        result.verified = False
    result.seconds = time.perf_counter() - started
    return result
