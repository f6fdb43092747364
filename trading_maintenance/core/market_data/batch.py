"""Consolidating several symbol-months of one timeframe together: the fast path.

Every file the batch reads is read in one multi-file scan and its previous archives in another,
deduplicated, sorted and checked in one query each; each group's archive is then written and
verified on its own, and the batch's temporary archives are read back in one scan. Anything
unusual sends the batch to the careful per-group path (group.py). Memory is bounded by the
batch, never by the data set.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from trading_maintenance.core.market_data.archive_write import (
    check_written,
    finish_verified,
    keep_archive,
    keep_equal_archive,
    recorded_archive_stat,
    same_key_as_previous,
    write_tmp,
)
from trading_maintenance.core.market_data.day_digest import group_day_digests, ny_day_bounds_us
from trading_maintenance.core.market_data.group import consolidate_group, error_text, manifest_result, source_entry, summarise
from trading_maintenance.core.market_data.io import bytes_sha256, file_stat, read_whole, scan_buffers
from trading_maintenance.core.market_data.layout import KEY, archive_path
from trading_maintenance.core.market_data.manifest import DAY_DIGEST_KEY, SourcePlan
from trading_maintenance.core.market_data.months import MonthSessions
from trading_maintenance.core.market_data.quality import day_entries, per_day_counts
from trading_maintenance.core.market_data.results import GroupResult


def _general_dedup(combined: pl.DataFrame) -> pl.DataFrame:
    return combined.lazy().unique(subset=["_group", *KEY], keep="last").sort(["_group", *KEY]).collect()


def _single_key_per_group(ordered: pl.DataFrame) -> bool:
    """Every group of a frame sorted by group holds one symbol and one timeframe."""
    return ordered.height == 0 or (
        ordered["timeframe"].n_unique() == 1 and bool((ordered["symbol"].rle_id() == ordered["_group"].rle_id()).all())
    )


def _two_sort_dedup(combined: pl.DataFrame) -> pl.DataFrame:
    """dedup_sorted by two stable sorts (timestamp, then group): for frames whose key does not fold
    into one integer (a null timestamp: kept as these sorts keep it)."""
    ordered = combined.lazy().sort("timestamp", maintain_order=True).sort("_group", maintain_order=True).collect()
    if not _single_key_per_group(ordered):
        return _general_dedup(combined)
    last_of_run = ((pl.col("timestamp") != pl.col("timestamp").shift(-1)) | (pl.col("_group") != pl.col("_group").shift(-1))).fill_null(True)
    return ordered.filter(last_of_run)


def dedup_sorted(combined: pl.DataFrame) -> pl.DataFrame:
    """Last written row per (_group, symbol, timeframe, timestamp), sorted by that key.

    Fast path when every group holds one symbol and timeframe (the normal case): (group, timestamp)
    folded into one integer key and the rows sorted once by it, stably, so the writing order is
    kept among equal keys and the last row of each run of equal keys is the last written (previous
    archives come first and are already in key order, which the sort finds cheap). A key that does
    not fold (a null timestamp, a span too wide) is sorted in two passes; a group with more than one
    symbol or timeframe takes a general unique + sort.
    """
    if combined.height == 0:
        return _two_sort_dedup(combined)
    if combined["timestamp"].null_count() or combined["_group"].null_count():
        return _two_sort_dedup(combined)
    lo, hi, gmin, gmax = combined.select(
        pl.col("timestamp").dt.epoch("us").min().alias("lo"),
        pl.col("timestamp").dt.epoch("us").max().alias("hi"),
        pl.col("_group").min().alias("gmin"),
        pl.col("_group").max().alias("gmax"),
    ).row(0)
    span = hi - lo + 1
    if gmin < 0 or (gmax + 1) * span >= 2**62:  # the folded key would not fit
        return _two_sort_dedup(combined)
    key = (pl.col("_group").cast(pl.Int64) * span + (pl.col("timestamp").dt.epoch("us") - lo)).alias("_k")
    ordered = combined.with_columns(key).sort("_k", maintain_order=True)
    if not _single_key_per_group(ordered):  # checked before dropping repeats: a shadowed symbol counts
        return _general_dedup(combined)
    return ordered.filter((pl.col("_k") != pl.col("_k").shift(-1)).fill_null(True)).drop("_k")


def _scan_batch(plans: list[SourcePlan]):
    """Every file the plans read, in one scan, widened until no reused source overlaps what was read.
    (frame with _file_date and _group, rows per file, stats, hashes, ranges per group) or None."""
    while True:
        files = [f for plan in plans for f in plan.read]
        # each file read once: its stat, hash and rows all describe the same bytes (a scan of
        # buffers costs about half the CPU of a scan of paths)
        contents = [read_whole(f.fspath) for f in files]
        stats = [st for _, st in contents]
        hashes = [bytes_sha256(data) for data, _ in contents]
        scanned = scan_buffers([data for data, _ in contents])
        del contents
        if scanned is None:
            return None
        daily, lengths = scanned
        # one chunk per file until now: gathers (the dedup's sort) over ~300 chunks cost several
        # times what they cost over one; a copy into one chunk costs less than that difference
        daily = daily.rechunk()
        group_of_file = np.repeat(np.arange(len(plans)), [len(plan.read) for plan in plans])
        days = np.array([f.day for f in files], dtype="datetime64[D]")
        daily = daily.with_columns(
            pl.Series("_file_date", np.repeat(days, lengths)).cast(pl.Date),
            pl.Series("_group", np.repeat(group_of_file, lengths)).cast(pl.Int32),
        )
        ranges = [{} for _ in plans]
        if daily.height and not daily["timestamp"].null_count():
            # each file's rows are one run (scan_buffers), and a group has one file per day: the
            # range of each nonempty run
            epoch = daily["timestamp"].dt.epoch("us").to_numpy()
            nonempty = [k for k, n in enumerate(lengths) if n]
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)[nonempty]
            for k, lo, hi in zip(nonempty, np.minimum.reduceat(epoch, starts), np.maximum.reduceat(epoch, starts)):
                ranges[group_of_file[k]][files[k].day] = (int(lo), int(hi))
        else:
            bounds = (
                daily.lazy()
                .group_by("_group", "_file_date")
                .agg(pl.col("timestamp").dt.epoch("us").min().alias("lo"), pl.col("timestamp").dt.epoch("us").max().alias("hi"))
                .collect()
            )
            for g, d, lo, hi in bounds.iter_rows():
                ranges[g][d] = (lo, hi)
        widened = [plan.widen(list(r.values())) for plan, r in zip(plans, ranges)]
        if not any(widened):
            return daily, lengths, stats, hashes, ranges


def _already_archived(plans: list[SourcePlan], targets: list[Path], daily: pl.DataFrame, ranges: list[dict]) -> dict[int, int]:
    """{group: distinct rows read} of the groups whose rows read this run, deduplicated, equal their
    archive's rows of each New York day they fall on (the trusted manifest's day digests, see
    day_digest.py), every file's rows on its own date, the archive still as the manifest recorded
    it: merging those rows would give that archive back, so it is neither read nor written."""
    candidates = []
    for i, plan in enumerate(plans):
        manifest = plan.manifest
        if manifest is None or not any(DAY_DIGEST_KEY in day for day in manifest["days"]):
            continue
        spans = [(ranges[i][f.day], ny_day_bounds_us(f.day)) for f in plan.read if f.day in ranges[i]]
        if all(start <= lo and hi < end for (lo, hi), (start, end) in spans):
            candidates.append(i)
    if not candidates:
        return {}
    rows = daily if len(candidates) == len(plans) else daily.filter(pl.col("_group").is_in(candidates))
    deduped = dedup_sorted(rows)
    starts = np.searchsorted(deduped["_group"].to_numpy(), [*candidates, len(plans)]).tolist()
    counts = [end - start for start, end in zip(starts, starts[1:])]
    read_digests = group_day_digests(deduped.drop("_file_date", "_group"), starts[:-1], counts)
    proven = {}
    for i, count, digests in zip(candidates, counts, read_digests):
        if count and not digests:
            continue
        archived = {day["ny_date"]: day.get(DAY_DIGEST_KEY) for day in plans[i].manifest["days"]}
        if all(archived.get(day) == digest for day, digest in digests.items()):
            try:
                if file_stat(targets[i]) != recorded_archive_stat(plans[i].manifest):
                    continue
            except OSError:
                continue
            proven[i] = count
    return proven


def _read_sources(plan: SourcePlan, stats: list[tuple[int, int]], hashes: list[str], lengths: list[int], ranges: dict) -> list[dict]:
    """The manifest entries of a group's files read this run (their stats, hashes, rows and ranges in plan.read's order)."""
    return [source_entry(f, st, h, rows, *ranges.get(f.day, (None, None))) for f, st, h, rows in zip(plan.read, stats, hashes, lengths)]


def _archive_kept(sym: str, tf: str, month: str, target: Path, plan: SourcePlan, read_sources: list[dict], distinct_read: int,
                  sessions: MonthSessions, calendar_name: str, dry_run: bool) -> GroupResult:
    """The result of a group _already_archived found: its archive kept, its manifest renewed with
    the sources read (none of their rows off their own date) and every day as it was."""
    result = manifest_result(sym, tf, month, str(target), plan, sessions)
    for entry in read_sources:
        entry["outside_file_date"] = 0
    result.files_read = len(read_sources)
    result.rows_in = sum(entry["rows"] for entry in read_sources)
    result.duplicates_removed = result.rows_in - distinct_read
    result.archive_rows_replaced = distinct_read  # each by an equal row
    recorded = recorded_archive_stat(plan.manifest)
    result.bytes_before = sum(entry["size"] for entry in read_sources) + recorded[0]
    if not dry_run:
        try:
            reused = [entry for _, entry in plan.reused]
            keep_archive(result, target, recorded, result.rows_out, ([*read_sources, *reused], calendar_name, plan.manifest["days"]))
        except Exception as exc:  # noqa: BLE001 - one group's failure never stops the others
            result.error = error_text(exc)
            result.verified = False
    return result


def consolidate_batch(
    items: list[tuple[str, str, SourcePlan]],
    month: str,
    market_data_dir: Path,
    archive_dir: Path,
    quarantine_dir: Path,
    sessions: MonthSessions,
    dry_run: bool = False,
    calendar_name: str = "XNYS",
) -> list[GroupResult]:
    """Several (symbol, timeframe) groups of one timeframe consolidated together; the careful
    per-group path when anything is unusual. Same results either way."""
    proven: dict[int, int] = {}  # groups whose rows read are proved already archived
    kept: list[GroupResult] = []  # their results, their manifests renewed

    def careful() -> list[GroupResult]:
        """Every group not already kept, one by one."""
        return kept + [
            consolidate_group(sym, tf, month, plan, market_data_dir, archive_dir, quarantine_dir, sessions, dry_run, calendar_name)
            for i, (sym, tf, plan) in enumerate(items) if i not in proven
        ]

    if len(items) < 2 or len({tf for _, tf, _ in items}) != 1:
        return careful()
    started = time.perf_counter()
    timeframe = items[0][1]
    plans = [plan for _, _, plan in items]
    try:
        targets = [archive_path(archive_dir, sym, tf, month) for sym, tf, _ in items]
        with_archive = [i for i, t in enumerate(targets) if t.exists()]
        scanned = _scan_batch(plans)
        if scanned is None:
            return careful()
        daily, lengths, stats, hashes, ranges = scanned
        bounds = np.cumsum([0, *(len(plan.read) for plan in plans)]).tolist()

        def files_of(i: int) -> tuple[list, list, list]:
            """(stats, hashes, rows) of group i's files read, in plan.read's order."""
            return stats[bounds[i]:bounds[i + 1]], hashes[bounds[i]:bounds[i + 1]], lengths[bounds[i]:bounds[i + 1]]

        found = _already_archived(plans, targets, daily, ranges)
        results_found = []
        for i, distinct_read in found.items():
            t0 = time.perf_counter()
            sym, tf, plan = items[i]
            read_sources = _read_sources(plan, *files_of(i), ranges[i])
            results_found.append(_archive_kept(sym, tf, month, targets[i], plan, read_sources, distinct_read, sessions, calendar_name, dry_run))
            results_found[-1].seconds = time.perf_counter() - t0
        proven.update(found)  # together: careful() redoes exactly the groups without a result
        kept.extend(results_found)
        if proven:
            if len(proven) == len(items):
                return kept
            with_archive = [i for i in with_archive if i not in proven]
            daily = daily.filter(~pl.col("_group").is_in(list(proven)))
        frames = [daily]
        prev_rows = [0] * len(items)
        prev_bytes = [0] * len(items)
        previous: dict[int, pl.DataFrame] = {}  # verified archives, as decoded: kept when nothing changes
        if with_archive:
            scanned = scan_buffers([read_whole(targets[i])[0] for i in with_archive])
            if scanned is None:
                return careful()  # the careful path reports an unreadable archive per group
            arch, arch_lengths = scanned
            start = 0
            for i, n in zip(with_archive, arch_lengths):
                prev_rows[i] = n
                prev_bytes[i] = targets[i].stat().st_size
                if plans[i].manifest is not None:
                    previous[i] = arch.slice(start, n)
                start += n
            arch = arch.with_columns(
                pl.lit(None, pl.Date).alias("_file_date"),
                pl.Series("_group", np.repeat(np.array(with_archive), arch_lengths)).cast(pl.Int32),
            )
            frames.insert(0, arch)  # the previous archive first: lowest priority
        combined = pl.concat(frames, how="vertical", rechunk=False)
        deduped = dedup_sorted(combined)
        per_day = per_day_counts(deduped.lazy(), timeframe, sessions, by=["_group"]).collect()
    except Exception:  # noqa: BLE001 - any doubt (a file vanishing, an odd schema): the careful path, which reports per group
        return careful()
    prepare_seconds = time.perf_counter() - started
    rows_by_group: dict[int, list[dict]] = {}
    for row in per_day.to_dicts():
        rows_by_group.setdefault(row["_group"], []).append(row)
    out_all = deduped.drop("_file_date", "_group")
    group_ids = deduped["_group"].to_numpy()
    del deduped, combined, frames, daily, per_day
    # each group's rows are one contiguous run of out_all (sorted by group first)
    present = np.unique(group_ids) if len(group_ids) else np.array([], dtype=np.int32)
    first = np.searchsorted(group_ids, present, side="left")
    last = np.searchsorted(group_ids, present, side="right")
    span = {int(g): (int(a), int(b - a)) for g, a, b in zip(present, first, last)}
    digests = {} if dry_run else dict(zip(span, group_day_digests(out_all, first.tolist(), (last - first).tolist())))
    del group_ids
    # duplicate keys of each group's rows (sorted by key: a repeat sits next to its twin; never
    # across two groups), as prefix sums: what each archive is encoded from has one row per key
    # by construction, and this counts it
    same_key = out_all.select(same_key_as_previous()).to_series().to_numpy().astype(np.int64)
    same_key[first] = 0
    repeats_before = np.concatenate([[0], np.cumsum(same_key)])
    results = kept
    to_write = []  # (result, out, manifest, duplicate keys, seconds)
    for i, (sym, tf, plan) in enumerate(items):
        if i in proven:
            continue  # its result is made
        t0 = time.perf_counter()
        file_stats, file_hashes, file_lengths = files_of(i)
        result = GroupResult(sym, tf, month, str(targets[i]))
        result.files_read = len(plan.read)
        result.rows_in = sum(file_lengths)
        result.previous_archive_rows = prev_rows[i]
        result.bytes_before = sum(st[0] for st in file_stats) + prev_bytes[i]
        a, n = span.get(i, (0, 0))
        out = out_all.slice(a, n)
        result.rows_out = out.height
        day_rows = rows_by_group.get(i, [])
        read_sources = _read_sources(plan, file_stats, file_hashes, file_lengths, ranges[i])
        manifest_sources = summarise(result, plan, day_rows, read_sources, tf, sessions)
        results.append(result)
        manifest = (manifest_sources, calendar_name, day_entries(day_rows, digests.get(i)))
        done = dry_run
        if not dry_run and i in previous:
            try:
                done = keep_equal_archive(result, out, previous.pop(i), targets[i], recorded_archive_stat(plan.manifest), manifest)
            except Exception as exc:  # noqa: BLE001 - one group's failure never stops the others
                result.error = error_text(exc)
                result.verified = False
                done = True  # its archive is left as it was
        if done:
            result.seconds = prepare_seconds / len(items) + time.perf_counter() - t0
            continue
        to_write.append((result, out, manifest, int(repeats_before[a + n] - repeats_before[a]), time.perf_counter() - t0))

    def write(job):
        """Encode, write and fsync under a temporary name, check what was written, rename, manifest."""
        result, out, manifest, duplicate_keys, spent = job
        t0 = time.perf_counter()
        try:
            tmp, encoded = write_tmp(out, Path(result.archive))
        except Exception as exc:  # noqa: BLE001 - one group's failure never stops the others
            result.error = error_text(exc)
            return
        try:
            check = check_written(tmp, encoded, out, duplicate_keys)
            del encoded
            finish_verified(result, out, tmp, Path(result.archive), manifest, check)
        except Exception as exc:  # noqa: BLE001
            tmp.unlink(missing_ok=True)
            result.error = error_text(exc)
            result.verified = False
        result.seconds = prepare_seconds / len(items) + spent + time.perf_counter() - t0

    # one after another: the month's batches already run max_workers at a time, and threads of
    # writers inside each batch only added contention for the GIL (2 per batch: +11 % CPU and
    # +12 % wall on --large, medians of 5 alternating runs)
    for job in to_write:
        write(job)
    return results
