"""Data cleanup planning: retention per category, duplicate files, compression of old kept files.

Pure logic over the filesystem (no Dagster). The plan is data: a dry run reports it, a real run
applies it with `apply_cleanup` and checks the result with `verify_cleanup`.

Rules
- A file's age comes from the date in its name only in the dated layouts of the platform contract
  (`{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet`) and of the files this project writes itself
  (`tradenote/tradenote_{date}.csv`, `maintenance/maintenance_report_{date}.md`, ...); a dated name
  counts from midnight of that day in the platform's time zone. Every other file's age is its
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

from trading_maintenance.core.hygiene.retention import FileEntry, plan_expired, unlink_if_unchanged
from trading_maintenance.core.common.atomic import fsync_dir as _fsync_dir

DAY = 86400
_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2}|19\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
ALREADY_COMPRESSED = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".zip", ".parquet", ".tgz", ".7z", ".lz4", ".enc")
NAME_DATE_TOLERANCE_DAYS = 2  # a name date further than this from the file's time is reported
DEDUPE_MIN_BYTES = 4096  # below one filesystem block a removed copy frees nothing worth a risk

_ISO_DAY = r"(?P<date>\d{4}-\d{2}-\d{2})"
_COMPACT_STAMP = r"(?P<date>\d{8})T\d{6}Z"
_GZ = r"(?:\.gz)?"
# Relative paths (under the category folder) whose name date is the file's age.
MARKET_DATA_LAYOUTS = (re.compile(rf"^[^/]+/[^/]+/{_ISO_DAY}\.parquet$"),)
EXPORT_LAYOUTS = (re.compile(rf"^tradenote/tradenote_{_ISO_DAY}(?:\.csv|\.zip|_metrics\.json|_risk\.json){_GZ}$"),)
REPORT_LAYOUTS = (
    re.compile(rf"^maintenance/(?:maintenance_report|performance)_{_ISO_DAY}\.(?:json|md){_GZ}$"),
    re.compile(rf"^reconciliation/reconciliation_{_COMPACT_STAMP}\.(?:json|md){_GZ}$"),
    re.compile(rf"^security/security_audit_{_COMPACT_STAMP}\.(?:json|sarif){_GZ}$"),
)

TEMPORARY_SUFFIXES = (".tmp", ".temp", ".partial", ".part")
_GZIP_TEMP = re.compile(r"^\.(?P<name>.+)\.gz(?:\.(?P<pid>\d+))?\.tmp$")


def date_from_name(name: str) -> date | None:
    """The first YYYY-MM-DD or YYYYMMDD date in a file name, or None."""
    for match in _DATE_IN_NAME.finditer(name):
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
    return None


def layout_date(relative: str, layouts: tuple[re.Pattern, ...]) -> date | None:
    """The date of a path in one of the dated layouts, or None (not a dated layout, no real date)."""
    for layout in layouts:
        match = layout.match(relative.replace(os.sep, "/"))
        if match:
            digits = match["date"].replace("-", "")
            try:
                return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            except ValueError:
                return None
    return None


def day_start(day: date, tz: str) -> float:
    return datetime.combine(day, dtime(0, 0), tzinfo=ZoneInfo(tz)).timestamp()


def age_stamp_factory(root: str, layouts: tuple[re.Pattern, ...], tz: str) -> Callable[[str, os.stat_result], float]:
    """The timestamp a file's age counts from: its layout's date (midnight, tz) or its mtime."""

    def stamp(path: str, st: os.stat_result) -> float:
        day = layout_date(os.path.relpath(path, root), layouts) if layouts else None
        return day_start(day, tz) if day is not None else st.st_mtime

    return stamp


def misleading_name_date(path: str, mtime: float, tz: str) -> str | None:
    """A note when a name outside the dated layouts holds a date far from the file's own time."""
    day = date_from_name(os.path.basename(path))
    if day is None:
        return None
    distance = abs(mtime - day_start(day, tz)) / DAY
    if distance <= NAME_DATE_TOLERANCE_DAYS + 1:
        return None
    written = datetime.fromtimestamp(mtime, ZoneInfo(tz)).date()
    return f"name holds date {day.isoformat()} but the file is from {written.isoformat()}: age taken from the file's time"


def is_temporary_name(relative: str) -> bool:
    """A name of a file still being written (or left by a crashed writer), not data.

    Compression suffixes are looked through, so `x.gz.tmp.gz` (a temp file compressed by mistake) is
    still temporary; a `.name-work-*` folder holds only temporaries."""
    parts = relative.replace(os.sep, "/").split("/")
    if any(part.startswith(".") and "-work-" in part for part in parts):
        return True
    name = parts[-1].lower()
    while name.endswith(ALREADY_COMPRESSED) and "." in name.strip("."):
        name = name.rsplit(".", 1)[0]
    return name.endswith(TEMPORARY_SUFFIXES)


def gzip_temp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.gz.{os.getpid()}.tmp")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def stale_gzip_temp(path: str) -> str | None:
    """Why a gzip temporary (`.x.gz.<pid>.tmp`, or the older `.x.gz.tmp`) is abandoned, or None
    when it is not one or its process still runs."""
    match = _GZIP_TEMP.match(os.path.basename(path))
    if not match:
        return None
    if match["pid"] is None:
        return "gzip temporary without a process id (left by an earlier version)"
    if process_alive(int(match["pid"])):
        return None
    return f"gzip temporary of process {match['pid']}, which is gone"


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
        reason = stale_gzip_temp(path)
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
    if is_temporary_name(os.path.basename(path)):
        return GzipResult(path, False, reason="temporary file of a writer; never compressed")
    if expected_mtime is not None and st.st_mtime != expected_mtime:
        return GzipResult(path, False, reason="modified since planning; kept")
    if open_ids and (st.st_dev, st.st_ino) in open_ids:
        return GzipResult(path, False, reason="held open by a process; kept uncompressed")
    if os.path.lexists(target):
        return GzipResult(path, False, reason=f"{os.path.basename(target)} already exists; kept")
    folder, name = os.path.split(path)
    tmp = gzip_temp_name(path)
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
        if stale_gzip_temp(temp.path) is None or is_held(temp.path, open_ids):
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


def is_managed_backup(path: str) -> bool:
    """Archives written by backup_archive: their retention is the backup job's own, which runs only
    after a new backup is verified and never deletes the newest one. Age alone must not remove the
    last good backup when backups have been failing for a week."""
    name = os.path.basename(path)
    return name.startswith(("backup-", ".backup-"))


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
