"""Data cleanup planning: retention per category, duplicate files, compression of old kept files.

Pure logic over the filesystem (no Dagster). The plan is data: a dry run reports it, a real run
applies it with `apply_category` and checks the result with `verify_category`. What names mean is in
file_names.py, compressing in compression.py, which files are held open in open_files.py.

Rules
- A file's age comes from the date in its name only in the dated layouts of the platform contract
  (`{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet`) and of the files this project writes itself
  (`tradenote/tradenote_{date}.csv`, `maintenance/weekly/maintenance_report_weekly_{first}_to_{last}.html`, ...); a dated name
  counts from midnight of its (last) day in the platform's time zone. Every other file's age is its
  modification time, and a date-like number in its name far from that time is reported, never
  trusted. Strictly older than the cutoff expires; exactly at the cutoff is kept.
- Temporary names (`*.tmp`, `*.partial`, `.*-work-*`, ...) belong to the task that writes them: no
  other category deletes, deduplicates or compresses them. Only the temp folder's own retention
  applies to them there, and a gzip temporary whose process is gone is removed by the next run.
- Symlinks are never followed or deleted; a category whose folder is a symlink or resolves outside
  the data root is skipped.
- Market-data daily files are deleted only when a verified monthly archive covers them
  (`archived` set); every other expired one is reported as "not archived, kept".
- Live logs (`*.log`) belong to log rotation and are never deleted here.
- Identical files (same size and SHA-256) are reduced to one (the oldest, then the first by name)
  only where copies are waste (exports, reports, backups), never below a minimum size (a lock or
  marker file is identical to its siblings on purpose) and never while either is held open; the
  hash is re-checked just before deleting.
- Kept files older than `compress_after` are gzipped (mtime preserved, so their age is unchanged)
  unless already compressed or a format that is compressed itself (parquet, zst, ...).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat as stat_mod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trading_maintenance.core.hygiene.compression import GzipResult, dead_gzip_temporary, gzip_file
from trading_maintenance.core.hygiene.file_names import (
    DAY,
    EXPORT_LAYOUTS,
    MARKET_DATA_LAYOUTS,
    REPORT_LAYOUTS,
    age_stamp_factory,
    is_compressed_name,
    is_live_log,
    is_managed_backup,
    is_newest_rotated_log,
    is_temporary_name,
    layout_date,
    misleading_name_date,
)
from trading_maintenance.core.hygiene.open_files import is_held
from trading_maintenance.core.hygiene.retention import FileEntry, plan_expired, unlink_if_unchanged

DEDUPE_MIN_BYTES = 4096  # below one filesystem block a removed copy frees nothing worth a risk


@dataclass
class Category:
    name: str
    root: str
    retention_days: float
    dated_layouts: tuple[re.Pattern, ...] = ()  # relative paths whose name date is the age
    dedupe: bool = False
    dedupe_min_bytes: int = DEDUPE_MIN_BYTES
    compress: bool = False
    requires_archive: bool = False  # market data: delete only what a verified archive covers
    exclude: Callable[[str], bool] | None = None  # files this category never touches
    compress_exclude: Callable[[str], bool] | None = None  # kept files never compressed here
    volatile: bool = False  # other programs delete their own files here (temp): a kept file vanishing is not our doing
    temporaries_are_data: bool = False  # the temp folder: temporary names are what its retention is for


@dataclass
class Held:
    path: str
    size: int
    reason: str


@dataclass
class Duplicate:
    path: str
    original: str
    size: int
    sha256: str


@dataclass
class CategoryPlan:
    name: str
    root: str
    retention_days: float
    cutoff: float
    delete: list[FileEntry] = field(default_factory=list)
    keep: list[FileEntry] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)  # expired but kept on purpose
    duplicates: list[Duplicate] = field(default_factory=list)
    compress: list[FileEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stale_temporaries: list[Held] = field(default_factory=list)  # abandoned gzip temporaries: removed
    temporaries: list[str] = field(default_factory=list)  # other tasks' temporary files: left alone
    notes: list[tuple[str, str]] = field(default_factory=list)  # reported, nothing done

    @property
    def bytes_to_free(self) -> int:
        return sum(e.size for e in self.delete) + sum(d.size for d in self.duplicates) + sum(t.size for t in self.stale_temporaries)

    def summary(self) -> dict:
        return {
            "category": self.name,
            "retention_days": self.retention_days,
            "expired_files": len(self.delete),
            "expired_bytes": sum(e.size for e in self.delete),
            "kept_files": len(self.keep),
            "held_files": len(self.held),
            "duplicate_files": len(self.duplicates),
            "compress_files": len(self.compress),
            "stale_temporaries": len(self.stale_temporaries),
            "temporary_files_left": len(self.temporaries),
            "skipped": len(self.skipped),
            "notes": len(self.notes),
        }


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def category_root_problem(root: Path, data_root: Path) -> str | None:
    """Why a category folder must not be walked (symlink, outside the data root), or None."""
    if os.path.islink(root):
        return "folder is a symlink (never followed)"
    try:
        resolved = root.resolve()
        resolved.relative_to(data_root.resolve())
    except (ValueError, OSError):
        return "folder resolves outside the data root"
    return None


def find_duplicates(entries: Iterable[FileEntry], min_bytes: int = DEDUPE_MIN_BYTES) -> list[Duplicate]:
    """Files with identical content of at least min_bytes: keep the oldest (then first by path),
    list the others."""
    by_size: dict[int, list[FileEntry]] = {}
    for entry in entries:
        if entry.size >= max(min_bytes, 1):
            by_size.setdefault(entry.size, []).append(entry)
    duplicates: list[Duplicate] = []
    for size, group in by_size.items():
        if len(group) < 2:
            continue
        by_hash: dict[str, list[FileEntry]] = {}
        for entry in group:
            try:
                by_hash.setdefault(sha256_of(entry.path), []).append(entry)
            except OSError:
                continue
        for digest, same in by_hash.items():
            if len(same) < 2:
                continue
            same.sort(key=lambda e: (e.mtime, e.path))
            original = same[0]
            duplicates.extend(Duplicate(e.path, original.path, size, digest) for e in same[1:])
    return duplicates


def plan_category(
    category: Category,
    data_root: Path,
    now: float,
    tz: str,
    compress_after_days: float | None,
    archived: set[str] | None = None,
) -> CategoryPlan:
    root = Path(category.root)
    cutoff = now - category.retention_days * DAY
    plan = CategoryPlan(category.name, str(root), category.retention_days, cutoff)
    if not root.exists() and not os.path.islink(root):
        return plan
    problem = category_root_problem(root, data_root)
    if problem:
        plan.skipped.append((str(root), problem))
        return plan

    def include(path: str) -> bool:
        if category.exclude and category.exclude(path):
            return False
        if category.temporaries_are_data or not is_temporary_name(os.path.relpath(path, root)):
            return True
        reason = dead_gzip_temporary(path)
        if reason:
            try:
                plan.stale_temporaries.append(Held(path, os.lstat(path).st_size, reason))
            except FileNotFoundError:
                pass
        else:
            plan.temporaries.append(path)
        return False

    base = plan_expired(root, category.retention_days * DAY, now, age_of=age_stamp_factory(str(root), category.dated_layouts, tz), include=include)
    plan.skipped.extend(base.skipped)
    plan.keep.extend(base.keep)
    for entry in base.keep + base.delete:
        if layout_date(os.path.relpath(entry.path, root), category.dated_layouts) is None:
            note = misleading_name_date(entry.path, entry.mtime, tz)
            if note:
                plan.notes.append((entry.path, note))
    for entry in base.delete:
        if category.requires_archive:
            covered = archived is not None and os.path.realpath(entry.path) in archived
            if not covered:
                plan.held.append(Held(entry.path, entry.size, "not archived, kept"))
                continue
        plan.delete.append(entry)
    if category.dedupe:
        plan.duplicates = find_duplicates(plan.keep, category.dedupe_min_bytes)
    if compress_after_days is not None and category.compress:
        dup_paths = {d.path for d in plan.duplicates}
        compress_cutoff = now - compress_after_days * DAY
        for entry in plan.keep:
            if entry.path in dup_paths or is_compressed_name(entry.path) or entry.size == 0:
                continue
            if category.compress_exclude and category.compress_exclude(entry.path):
                continue
            if now - entry.age_seconds < compress_cutoff:
                plan.compress.append(entry)
    return plan


def plan_cleanup(
    categories: list[Category],
    data_root: Path,
    now: float,
    tz: str = "America/New_York",
    compress_after_days: float | None = 7,
    archived: set[str] | None = None,
) -> list[CategoryPlan]:
    return [plan_category(c, data_root, now, tz, compress_after_days, archived) for c in categories]


# --- applying and verifying ------------------------------------------------------------------


@dataclass
class CategoryOutcome:
    name: str
    deleted: list[FileEntry] = field(default_factory=list)
    deduplicated: list[Duplicate] = field(default_factory=list)
    compressed: list[GzipResult] = field(default_factory=list)
    stale_removed: list[Held] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        saved = sum(r.bytes_before - r.bytes_after for r in self.compressed if r.ok)
        return sum(e.size for e in self.deleted) + sum(d.size for d in self.deduplicated) + sum(t.size for t in self.stale_removed) + saved

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    def summary(self) -> dict:
        return {
            "category": self.name,
            "deleted_files": len(self.deleted),
            "deduplicated_files": len(self.deduplicated),
            "compressed_files": sum(1 for r in self.compressed if r.ok),
            "stale_temporaries_removed": len(self.stale_removed),
            "bytes_freed": self.bytes_freed,
            "failed": len(self.failed),
            "problems": len(self.problems),
        }


def _unlink_if_same(entry_path: str, mtime: float, outcome: CategoryOutcome) -> bool:
    deleted, problem = unlink_if_unchanged(entry_path, mtime)
    if problem:
        outcome.failed.append((entry_path, problem))
    return deleted


def remove_stale_temporaries(candidates: list[Held], open_ids: set[tuple[int, int]] | None) -> tuple[list[Held], list[tuple[str, str]]]:
    """Remove abandoned gzip temporaries, re-checking each: still abandoned and held by nobody."""
    removed, failed = [], []
    for temp in candidates:
        if dead_gzip_temporary(temp.path) is None or is_held(temp.path, open_ids):
            continue  # its writer is alive after all
        try:
            if not stat_mod.S_ISREG(os.lstat(temp.path).st_mode):
                continue
            os.unlink(temp.path)
            removed.append(temp)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append((temp.path, f"{type(exc).__name__}: {exc.strerror}"))
    return removed, failed


def keep_files_held_open(plan: CategoryPlan, open_ids: set[tuple[int, int]] | None) -> None:
    """Move planned deletions of files a process holds open to `held` (a dry run shows the same)."""
    for entry in list(plan.delete):
        if is_held(entry.path, open_ids):
            # a writer that never reopens may still append to it: deleting would lose its lines
            plan.delete.remove(entry)
            plan.held.append(Held(entry.path, entry.size, "held open by a process; kept"))
    for dup in list(plan.duplicates):
        if is_held(dup.path, open_ids) or is_held(dup.original, open_ids):
            # a copy in use is no waste: its holder may write to it or expect it to stay
            plan.duplicates.remove(dup)
            plan.held.append(Held(dup.path, dup.size, f"identical to {os.path.basename(dup.original)} but held open; kept"))


def apply_category(plan: CategoryPlan, open_ids: set[tuple[int, int]] | None = None) -> CategoryOutcome:
    outcome = CategoryOutcome(plan.name)
    outcome.stale_removed, failed = remove_stale_temporaries(plan.stale_temporaries, open_ids)
    outcome.failed.extend(failed)
    keep_files_held_open(plan, open_ids)
    for entry in plan.delete:
        if _unlink_if_same(entry.path, entry.mtime, outcome):
            outcome.deleted.append(entry)
    for dup in plan.duplicates:
        try:
            if not os.path.isfile(dup.original) or os.path.islink(dup.original):
                outcome.failed.append((dup.path, "original vanished; duplicate kept"))
                continue
            if sha256_of(dup.original) != dup.sha256 or sha256_of(dup.path) != dup.sha256:
                outcome.failed.append((dup.path, "content changed since planning; kept"))
                continue
            os.unlink(dup.path)
            outcome.deduplicated.append(dup)
        except FileNotFoundError:
            continue
        except OSError as exc:
            outcome.failed.append((dup.path, f"{type(exc).__name__}: {exc.strerror}"))
    for entry in plan.compress:
        result = gzip_file(entry.path, entry.mtime, open_ids)
        outcome.compressed.append(result)
        if not result.ok and not result.reason.startswith(("held open", "gone before")):
            outcome.failed.append((entry.path, result.reason))
    return outcome


def verify_category(
    plan: CategoryPlan,
    outcome: CategoryOutcome,
    category: Category,
    data_root: Path,
    now: float,
    tz: str,
    archived: set[str] | None,
) -> list[str]:
    """Nothing older than the cutoff remains (except files held on purpose or whose deletion was
    reported failed); nothing younger was removed (every kept file is there, or its .gz when it was
    compressed on purpose)."""
    problems: list[str] = []
    again = plan_category(category, data_root, now, tz, None, archived)
    allowed = {h.path for h in plan.held} | {p for p, _ in outcome.failed}
    for entry in again.delete:
        if entry.path not in allowed:
            problems.append(f"older than the cutoff and still present: {entry.path}")
    compressed = {r.path for r in outcome.compressed if r.ok}
    dedup = {d.path for d in outcome.deduplicated}
    for entry in plan.keep:
        if entry.path in dedup:
            if not os.path.lexists(next(d.original for d in outcome.deduplicated if d.path == entry.path)):
                problems.append(f"duplicate removed but its original is gone: {entry.path}")
            continue
        if entry.path in compressed:
            if not os.path.lexists(entry.path + ".gz"):
                problems.append(f"compressed file missing: {entry.path}.gz")
            continue
        if not os.path.lexists(entry.path) and not category.volatile:
            problems.append(f"file within retention disappeared: {entry.path}")
    for entry in outcome.deleted:
        if os.path.lexists(entry.path):
            problems.append(f"deleted file still present: {entry.path}")
    outcome.problems.extend(problems)
    return problems


def standard_categories(settings) -> list[Category]:
    """The contract's categories with their retention settings."""
    retention = settings.maintenance.data_retention
    min_bytes = settings.hygiene.dedupe_min_bytes
    return [
        Category("market_data", str(settings.market_data_dir), retention.parquet_files, MARKET_DATA_LAYOUTS, requires_archive=True),
        Category("logs", str(settings.logs_dir), retention.log_files, compress=True, exclude=is_live_log, compress_exclude=is_newest_rotated_log),
        Category("temp", str(settings.temp_dir), retention.temp_files, volatile=True, temporaries_are_data=True),
        Category("exports", str(settings.exports_dir), retention.export_files, EXPORT_LAYOUTS, dedupe=True, dedupe_min_bytes=min_bytes, compress=True),
        Category("reports", str(settings.reports_dir), retention.report_files, REPORT_LAYOUTS, dedupe=True, dedupe_min_bytes=min_bytes, compress=True),
        Category("backups", str(settings.backups_dir), retention.backup_files, dedupe=True, dedupe_min_bytes=min_bytes, exclude=is_managed_backup),
    ]
