"""Which daily files a verified archive covers, and deleting them once past retention.

Only daily files listed in a manifest that matches its archive, unchanged in size, mtime and
content hash, can ever be deleted; after deleting, what should remain is checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from trading_maintenance.core.common.atomic import fsync_dir as _fsync_dir
from trading_maintenance.core.market_data.io import UnreadableFile, file_sha256, file_stat, read_market_file
from trading_maintenance.core.market_data.layout import KEY, archive_dir_for, archive_path, discover_archives, discover_daily_files, parse_day_name
from trading_maintenance.core.market_data.manifest import forget_sources, has_recorded_hash, load_manifest


def archived_daily_files(
    market_data_dir: str | Path,
    archive_dir: str | Path | None = None,
    months: Iterable[str] | None = None,
    verify: bool = True,
) -> set[Path]:
    """Daily files whose rows are verified present in a written, verified monthly archive.

    A daily file qualifies only when all of these hold:
      - the archive {archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.parquet of its month exists and
        its manifest (written only after the archive was read back and found equal to its
        deduplicated sources) records the archive's current size and mtime;
      - the manifest lists the daily file with its current size and mtime and a content hash (a
        file rewritten or appended to since consolidation does not qualify until the month is
        consolidated again);
      - with verify=True (default): the daily file's bytes still have that hash (a rewrite that
        kept size and mtime is caught), the archive reads back, and every (symbol, timeframe,
        timestamp) key of the daily file is present in it (the daily file is re-read now).
    delete_archived checks the hash again just before deleting.
    Unreadable files, missing manifests and any doubt mean "not archived". No retention is applied:
    callers decide age (see expired_archived_daily_files). Never raises for bad files.
    """
    market_data_dir = Path(market_data_dir)
    archive_dir = Path(archive_dir) if archive_dir else archive_dir_for(market_data_dir)
    wanted = set(months) if months is not None else None
    safe: set[Path] = set()
    for (symbol, timeframe, month), archive in sorted(discover_archives(archive_dir).items()):
        if wanted is not None and month not in wanted:
            continue
        manifest = load_manifest(archive)
        if not manifest or not isinstance(manifest.get("sources"), list) or not isinstance(manifest.get("archive"), dict):
            continue
        if manifest.get("symbol") != symbol or manifest.get("timeframe") != timeframe or manifest.get("month") != month:
            continue
        try:
            size, mtime_ns = file_stat(archive)
        except OSError:
            continue
        meta = manifest.get("archive", {})
        if meta.get("size") != size or meta.get("mtime_ns") != mtime_ns:
            continue
        folder = market_data_dir / symbol / timeframe
        candidates = []
        for src in manifest.get("sources", []):
            # a manifest is read from disk: only a real day of its own month, in its own folder
            name = str(src.get("name", ""))
            day = parse_day_name(name)
            if day is None or day.isoformat()[:7] != month:
                continue
            if not has_recorded_hash(src):
                continue
            path = folder / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode) or file_stat(path) != (src.get("size"), src.get("mtime_ns")):
                    continue
                if verify and file_sha256(path) != src["sha256"]:
                    continue
            except OSError:
                continue
            candidates.append(path)
        if not candidates:
            continue
        if not verify:
            safe.update(candidates)
            continue
        try:
            keys = pl.read_parquet(archive, columns=KEY)
            if keys.height != meta.get("rows"):
                continue
        except Exception:  # noqa: BLE001
            continue
        for path in candidates:
            try:
                daily, _ = read_market_file(path, symbol, timeframe)
            except (UnreadableFile, OSError):
                continue
            daily_keys = daily.select(KEY).unique()
            if daily_keys.join(keys, on=KEY, how="anti").height == 0:
                safe.add(path)
    return safe


def file_day(path: Path) -> date | None:
    return parse_day_name(path.name)


def is_expired(day: date, today: date, retention_days: int) -> bool:
    """Strictly older than retention: a file exactly retention_days old is kept."""
    return (today - day).days > retention_days


def expired_archived_daily_files(
    market_data_dir: str | Path,
    archive_dir: str | Path | None,
    retention_days: int,
    today: date,
    months: Iterable[str] | None = None,
    verify: bool = True,
) -> list[Path]:
    """archived_daily_files restricted to files whose trading day is older than retention_days."""
    files = archived_daily_files(market_data_dir, archive_dir, months, verify)
    return sorted(p for p in files if (d := file_day(p)) is not None and is_expired(d, today, retention_days))


@dataclass
class CleanupResult:
    planned: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # changed since archived: not an error
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems


def delete_archived(files: list[Path], market_data_dir: Path, archive_dir: Path, dry_run: bool = False) -> CleanupResult:
    """Delete the given daily files (a plan from expired_archived_daily_files), then verify: each
    deleted file is gone, each archive covering them still reads back with its manifest's rows,
    and every daily file not planned is still there."""
    result = CleanupResult(planned=[str(p) for p in files])
    if dry_run or not files:
        return result
    planned = set(files)
    before = {p for group in discover_daily_files(market_data_dir).values() for p in (f.path for f in group)}
    touched_archives = set()
    for path in files:
        sym, tf = path.parent.parent.name, path.parent.name
        day = file_day(path)
        archive = archive_path(archive_dir, sym, tf, day.isoformat()[:7]) if day else None
        manifest = load_manifest(archive) if archive else None
        sources = (manifest or {}).get("sources")
        src = next((s for s in sources if isinstance(s, dict) and s.get("name") == path.name), None) if isinstance(sources, list) else None
        try:
            if not has_recorded_hash(src) or file_stat(path) != (src.get("size"), src.get("mtime_ns")):
                result.kept.append((str(path), "changed since it was archived; kept until the month is consolidated again"))
                continue
            if file_sha256(path) != src["sha256"]:
                # same size and mtime, other bytes: the next consolidation must read it again
                forget_sources(archive, {path.name})
                result.kept.append(
                    (str(path), "content changed since it was archived (same size and time, other bytes); kept, read again by the next consolidation")
                )
                continue
            size = path.stat().st_size
            path.unlink()
            result.deleted.append(str(path))
            result.bytes_freed += size
            touched_archives.add(archive)
        except FileNotFoundError:
            continue
        except OSError as exc:
            result.failed.append((str(path), f"{type(exc).__name__}: {exc.strerror}"))
    for folder in {Path(p).parent for p in result.deleted}:
        try:
            _fsync_dir(folder)
        except OSError:
            pass
    for path in result.deleted:
        if os.path.lexists(path):
            result.problems.append(f"deleted file still present: {path}")
    for archive in touched_archives:
        manifest = load_manifest(archive) or {}
        try:
            rows = pl.scan_parquet(archive).select(pl.len()).collect().item()
            if rows != manifest.get("archive", {}).get("rows"):
                result.problems.append(f"archive {archive} has {rows} rows, manifest says {manifest.get('archive', {}).get('rows')}")
        except Exception as exc:  # noqa: BLE001
            result.problems.append(f"archive {archive} unreadable after cleanup: {type(exc).__name__}")
    for path in before - planned:
        if not path.exists():
            result.problems.append(f"daily file not planned for deletion disappeared: {path}")
    return result


