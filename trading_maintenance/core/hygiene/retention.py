"""Planning age-based deletions: which files under a root are past their retention.

The plan is data, so a dry run reports exactly what an real run would do. Symlinks are never
followed and never deleted; nothing outside the root is ever considered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime: float
    age_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DeletionPlan:
    root: str
    cutoff: float  # files whose age timestamp is strictly before this are expired
    delete: list[FileEntry] = field(default_factory=list)
    keep: list[FileEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def bytes_to_free(self) -> int:
        return sum(f.size for f in self.delete)


def iter_files(root: Path):
    """Regular files below root, not following symlinks (a link is yielded as ('link', path))."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                yield "link", full
        for name in filenames:
            full = os.path.join(dirpath, name)
            yield ("link" if os.path.islink(full) else "file"), full


def plan_expired(
    root: str | Path,
    retention_seconds: float,
    now: float,
    age_of: Callable[[str, os.stat_result], float] | None = None,
    include: Callable[[str], bool] | None = None,
) -> DeletionPlan:
    """Files under root whose age timestamp (mtime unless age_of says otherwise) is older than retention.

    A file exactly at the cutoff is kept: only strictly older files expire.
    """
    root = Path(root)
    cutoff = now - retention_seconds
    plan = DeletionPlan(str(root), cutoff)
    if not root.is_dir():
        return plan
    for kind, path in iter_files(root):
        if kind == "link":
            plan.skipped.append((path, "symlink (never followed or deleted)"))
            continue
        if include is not None and not include(path):
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        stamp = age_of(path, st) if age_of else st.st_mtime
        entry = FileEntry(path, st.st_size, st.st_mtime, now - stamp)
        (plan.delete if stamp < cutoff else plan.keep).append(entry)
    return plan


@dataclass
class DeletionOutcome:
    deleted: list[FileEntry] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # from verification

    @property
    def bytes_freed(self) -> int:
        return sum(f.size for f in self.deleted)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems


def unlink_if_unchanged(path: str, planned_mtime: float) -> tuple[bool, str | None]:
    """Delete the file only if it is still the one that was planned (same mtime).

    Returns (deleted, why not): a file gone already is (False, None); a changed or undeletable one
    is (False, reason), kept and to be reported.
    """
    try:
        if os.lstat(path).st_mtime != planned_mtime:
            return False, "modified since planning; kept"
        os.unlink(path)
        return True, None
    except FileNotFoundError:
        return False, None
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc.strerror}"


def apply_plan(plan: DeletionPlan) -> DeletionOutcome:
    """Delete the planned files, re-checking each is still the file that was planned (same mtime)."""
    outcome = DeletionOutcome()
    for entry in plan.delete:
        deleted, problem = unlink_if_unchanged(entry.path, entry.mtime)
        if deleted:
            outcome.deleted.append(entry)
        elif problem:
            outcome.failed.append((entry.path, problem))
    return outcome


def verify_plan(plan: DeletionPlan, outcome: DeletionOutcome) -> list[str]:
    """After acting: every kept file is still there, every deleted one is gone."""
    problems = []
    for entry in plan.keep:
        if not os.path.lexists(entry.path):
            problems.append(f"kept file disappeared: {entry.path}")
    for entry in outcome.deleted:
        if os.path.lexists(entry.path):
            problems.append(f"deleted file still present: {entry.path}")
    outcome.problems.extend(problems)
    return problems
