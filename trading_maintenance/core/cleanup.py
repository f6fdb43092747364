"""Data cleanup planning: retention per category, duplicate files, compression of old kept files.

Pure logic over the filesystem (no Dagster). The plan is data: a dry run reports it, a real run
applies it with `apply_cleanup` and checks the result with `verify_cleanup`.

Rules
- A file's age comes from the date in its name where it has one (market data, exports, reports),
  else from its modification time. A dated name counts from midnight of that day in the platform's
  time zone. Strictly older than the cutoff expires; exactly at the cutoff is kept.
- Symlinks are never followed or deleted; a category whose folder is a symlink or resolves outside
  the data root is skipped.
- Market-data daily files are deleted only when a verified monthly archive covers them
  (`archived` set); every other expired one is reported as "not archived, kept".
- Live logs (`*.log`) belong to log rotation and are never deleted here.
- Identical files (same size and SHA-256) in exports and temp are reduced to one (the oldest,
  then the first by name); the hash is re-checked just before deleting.
- Kept files older than `compress_after` are gzipped (mtime preserved, so their age is unchanged)
  unless already compressed or a format that is compressed itself (parquet, zst, ...).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import stat as stat_mod
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time as dtime
from pathlib import Path
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from trading_maintenance.core.retention import FileEntry, iter_files, plan_expired, unlink_if_unchanged
from trading_maintenance.core.atomic import fsync_dir as _fsync_dir

DAY = 86400
_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2}|19\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
ALREADY_COMPRESSED = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".zip", ".parquet", ".tgz", ".7z", ".lz4", ".enc")


def date_from_name(name: str) -> date | None:
    """The first YYYY-MM-DD or YYYYMMDD date in a file name, or None."""
    for match in _DATE_IN_NAME.finditer(name):
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
    return None


def day_start(day: date, tz: str) -> float:
    return datetime.combine(day, dtime(0, 0), tzinfo=ZoneInfo(tz)).timestamp()


def age_stamp_factory(use_name_date: bool, tz: str) -> Callable[[str, os.stat_result], float]:
    """The timestamp a file's age counts from: its name's date (midnight, tz) or its mtime."""

    def stamp(path: str, st: os.stat_result) -> float:
        if use_name_date:
            day = date_from_name(os.path.basename(path))
            if day is not None:
                return day_start(day, tz)
        return st.st_mtime

    return stamp


def is_live_log(path: str) -> bool:
    return path.endswith(".log")


def is_newest_rotated_log(path: str) -> bool:
    """`x.log.1`: the newest rotated file, which a writer that never reopens may still hold."""
    return path.endswith(".log.1")


def is_compressed_name(path: str) -> bool:
    return path.lower().endswith(ALREADY_COMPRESSED)


@dataclass
class Category:
    name: str
    root: str
    retention_days: float
    name_dates: bool = False  # age from the date in the name when present
    dedupe: bool = False
    compress: bool = False
    requires_archive: bool = False  # market data: delete only what a verified archive covers
    exclude: Callable[[str], bool] | None = None  # files this category never touches
    compress_exclude: Callable[[str], bool] | None = None  # kept files never compressed here
    volatile: bool = False  # other programs delete their own files here (temp): a kept file vanishing is not our doing


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

    @property
    def bytes_to_free(self) -> int:
        return sum(e.size for e in self.delete) + sum(d.size for d in self.duplicates)

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
            "skipped": len(self.skipped),
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


def find_duplicates(entries: Iterable[FileEntry]) -> list[Duplicate]:
    """Files with identical content: keep the oldest (then first by path), list the others."""
    by_size: dict[int, list[FileEntry]] = {}
    for entry in entries:
        if entry.size > 0:
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
    exclude = category.exclude
    base = plan_expired(
        root,
        category.retention_days * DAY,
        now,
        age_of=age_stamp_factory(category.name_dates, tz),
        include=(lambda p: not exclude(p)) if exclude else None,
    )
    plan.skipped.extend(base.skipped)
    plan.keep.extend(base.keep)
    for entry in base.delete:
        if category.requires_archive:
            covered = archived is not None and os.path.realpath(entry.path) in archived
            if not covered:
                plan.held.append(Held(entry.path, entry.size, "not archived, kept"))
                continue
        plan.delete.append(entry)
    if category.dedupe:
        plan.duplicates = find_duplicates(plan.keep)
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


# --- compression -----------------------------------------------------------------------------


@dataclass
class GzipResult:
    path: str
    ok: bool
    target: str = ""
    bytes_before: int = 0
    bytes_after: int = 0
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def gzip_file(path: str, expected_mtime: float | None = None, open_ids: set[tuple[int, int]] | None = None) -> GzipResult:
    """Gzip `path` to `path.gz` safely; the original is removed only when all checks pass.

    Written to a temporary name, fsynced, read back and compared (SHA-256 of the content), given the
    original's mtime, renamed into place; the original is deleted only if it did not change while
    being compressed and no process holds it open.
    """
    target = path + ".gz"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return GzipResult(path, False, reason="gone before compression")
    if not stat_mod.S_ISREG(st.st_mode):
        return GzipResult(path, False, reason="not a regular file")
    if expected_mtime is not None and st.st_mtime != expected_mtime:
        return GzipResult(path, False, reason="modified since planning; kept")
    if open_ids and (st.st_dev, st.st_ino) in open_ids:
        return GzipResult(path, False, reason="held open by a process; kept uncompressed")
    if os.path.lexists(target):
        return GzipResult(path, False, reason=f"{os.path.basename(target)} already exists; kept")
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.gz.tmp")
    source_digest = hashlib.sha256()
    try:
        with open(path, "rb") as src, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=int(st.st_mtime)) as gz:
                while block := src.read(1 << 20):
                    source_digest.update(block)
                    gz.write(block)
            raw.flush()
            os.fsync(raw.fileno())
        after = os.lstat(path)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            os.unlink(tmp)
            return GzipResult(path, False, reason="changed while compressing; kept uncompressed")
        check = hashlib.sha256()
        with gzip.open(tmp, "rb") as back:
            while block := back.read(1 << 20):
                check.update(block)
        if check.hexdigest() != source_digest.hexdigest():
            os.unlink(tmp)
            return GzipResult(path, False, reason="compressed copy did not read back identical; kept")
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.path.lexists(target):
            os.unlink(tmp)
            return GzipResult(path, False, reason="target appeared meanwhile; kept")
        os.rename(tmp, target)
        _fsync_dir(folder)
        final = os.lstat(path)
        if (final.st_size, final.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            os.unlink(target)
            return GzipResult(path, False, reason="changed while compressing; kept uncompressed")
        os.unlink(path)
        _fsync_dir(folder)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return GzipResult(path, False, reason=f"{type(exc).__name__}: {exc.strerror}")
    return GzipResult(path, True, target, st.st_size, os.lstat(target).st_size)


def file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of a path without following a final symlink; None when it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def open_file_ids() -> set[tuple[int, int]] | None:
    """(device, inode) of every file a readable process holds open (Linux /proc); None when unknown.

    Identity by inode, not path: a file renamed after the snapshot (log rotation) is still known.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    held: set[tuple[int, int]] = set()
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        fd_dir = pid_dir / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(fd_dir / fd)
            except OSError:
                continue
            if stat_mod.S_ISREG(st.st_mode):
                held.add((st.st_dev, st.st_ino))
    return held


def is_held(path: str, held: set[tuple[int, int]] | None) -> bool:
    if not held:
        return False
    return file_id(path) in held


# --- applying and verifying ------------------------------------------------------------------


@dataclass
class CategoryOutcome:
    name: str
    deleted: list[FileEntry] = field(default_factory=list)
    deduplicated: list[Duplicate] = field(default_factory=list)
    compressed: list[GzipResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        saved = sum(r.bytes_before - r.bytes_after for r in self.compressed if r.ok)
        return sum(e.size for e in self.deleted) + sum(d.size for d in self.deduplicated) + saved

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    def summary(self) -> dict:
        return {
            "category": self.name,
            "deleted_files": len(self.deleted),
            "deduplicated_files": len(self.deduplicated),
            "compressed_files": sum(1 for r in self.compressed if r.ok),
            "bytes_freed": self.bytes_freed,
            "failed": len(self.failed),
            "problems": len(self.problems),
        }


def _unlink_if_same(entry_path: str, mtime: float, outcome: CategoryOutcome) -> bool:
    deleted, problem = unlink_if_unchanged(entry_path, mtime)
    if problem:
        outcome.failed.append((entry_path, problem))
    return deleted


def apply_category(plan: CategoryPlan, open_ids: set[tuple[int, int]] | None = None) -> CategoryOutcome:
    outcome = CategoryOutcome(plan.name)
    for entry in list(plan.delete):
        if is_held(entry.path, open_ids):
            # a writer that never reopens may still append to it: deleting would lose its lines
            plan.delete.remove(entry)
            plan.held.append(Held(entry.path, entry.size, "held open by a process; kept"))
            continue
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


def is_managed_backup(path: str) -> bool:
    """Archives written by backup_archive: their retention is the backup job's own, which runs only
    after a new backup is verified and never deletes the newest one. Age alone must not remove the
    last good backup when backups have been failing for a week."""
    name = os.path.basename(path)
    return name.startswith(("backup-", ".backup-"))


def standard_categories(settings, archived_available: bool = True) -> list[Category]:
    """The contract's categories with their retention settings."""
    retention = settings.maintenance.data_retention
    return [
        Category("market_data", str(settings.market_data_dir), retention.parquet_files, name_dates=True, requires_archive=True),
        Category("logs", str(settings.logs_dir), retention.log_files, compress=True, exclude=is_live_log, compress_exclude=is_newest_rotated_log),
        Category("temp", str(settings.temp_dir), retention.temp_files, dedupe=True, volatile=True),
        Category("exports", str(settings.exports_dir), retention.export_files, name_dates=True, dedupe=True, compress=True),
        Category("reports", str(settings.reports_dir), retention.report_files, name_dates=True, compress=True),
        Category("backups", str(settings.backups_dir), retention.backup_files, exclude=is_managed_backup),
    ]


def iter_regular_files(root: Path):
    for kind, path in iter_files(root):
        if kind == "file":
            yield path
