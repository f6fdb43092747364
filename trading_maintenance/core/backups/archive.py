"""Backup archives: names, listing, choosing one, and retention.

An archive is a tar stream (PAX) compressed with zstd (default) or gzip, optionally sealed with
streamed AES-256-GCM (crypto.py). Every member is a regular file; the last member, MANIFEST.json,
lists every other member with its size and SHA-256 plus the store versions, so a reader verifies
the whole archive before anything is restored (archive_reader.py). archive_writer.py writes it.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

MANIFEST_NAME = "MANIFEST.json"
FORMATS = ("tar.zst", "tar.gz")
ID_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_RE = re.compile(r"^backup-(?P<id>\d{8}T\d{6}Z(?:-\d+)?)\.(?P<fmt>tar\.zst|tar\.gz)(?P<enc>\.enc)?$")
COPY_BUFSIZE = 1 << 20
MANIFEST_VERSION = 1
PARTIAL_PREFIX = ".backup-"
PARTIAL_SUFFIX = ".partial"
WORK_PREFIX = ".backup-work-"
# Kept free on the staging disk so a restore never fills it for the platform.
MIN_FREE_BYTES = 64 << 20
MAX_MANIFEST_BYTES = 64 << 20


class ArchiveError(ValueError):
    """The archive cannot be trusted or used; the message says why and is safe to show."""


# --------------------------------------------------------------------------- names and listing


@dataclass(frozen=True)
class BackupRef:
    backup_id: str
    name: str
    created_at: datetime
    size: int = 0
    location: str = ""  # local path or s3://bucket/key
    encrypted: bool = False
    fmt: str = "tar.zst"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def new_backup_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(ID_FORMAT)


def archive_name(backup_id: str, fmt: str, encrypted: bool) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown backup format {fmt!r}; expected one of {FORMATS}")
    return f"backup-{backup_id}.{fmt}" + (".enc" if encrypted else "")


def parse_archive_name(name: str) -> tuple[str, datetime, str, bool] | None:
    """(id, created_at UTC, format, encrypted) for a final archive name; None for anything else."""
    match = NAME_RE.match(name)
    if not match:
        return None
    created = datetime.strptime(match["id"].split("-")[0], ID_FORMAT).replace(tzinfo=timezone.utc)
    return match["id"], created, match["fmt"], bool(match["enc"])


def list_local_backups(backups_dir: str | Path) -> list[BackupRef]:
    """Final archives in backups_dir, oldest first (temporary and foreign files are ignored)."""
    root = Path(backups_dir)
    refs = []
    if not root.is_dir():
        return refs
    for entry in os.scandir(root):
        if not entry.is_file(follow_symlinks=False):
            continue
        parsed = parse_archive_name(entry.name)
        if parsed is None:
            continue
        backup_id, created, fmt, enc = parsed
        refs.append(BackupRef(backup_id, entry.name, created, entry.stat().st_size, entry.path, enc, fmt))
    return sorted(refs, key=lambda r: (r.created_at, r.backup_id))


def is_temporary_name(name: str) -> bool:
    """A backup's or restore's temporary file or folder: never a backup, never data."""
    return name.startswith((PARTIAL_PREFIX, WORK_PREFIX)) or name.endswith(PARTIAL_SUFFIX)


def select_backup(refs: list[BackupRef], which: str = "latest", on_date: str | None = None, tz: str = "America/New_York") -> BackupRef:
    """`latest`, an id (or unique id prefix); `on_date` (YYYY-MM-DD, in tz) narrows to that day's backups."""
    from zoneinfo import ZoneInfo

    candidates = refs
    if on_date:
        day = datetime.fromisoformat(on_date).date()
        candidates = [r for r in refs if r.created_at.astimezone(ZoneInfo(tz)).date() == day]
        if not candidates:
            raise ArchiveError(f"no backup was made on {on_date} ({tz})")
    if not candidates:
        raise ArchiveError("no backups found")
    if which in ("", "latest"):
        return candidates[-1]
    matches = [r for r in candidates if r.backup_id == which or r.name == which]
    if not matches:
        matches = [r for r in candidates if r.backup_id.startswith(which)]
    if len(matches) != 1:
        raise ArchiveError(f"backup {which!r} {'is ambiguous' if matches else 'not found'}")
    return matches[0]


# --------------------------------------------------------------------------- retention


@dataclass
class RetentionPlan:
    cutoff: datetime
    keep: list[BackupRef] = field(default_factory=list)
    delete: list[BackupRef] = field(default_factory=list)


def plan_backup_retention(refs: list[BackupRef], retention_days: int, now: datetime, protect: set[str] = frozenset()) -> RetentionPlan:
    """Backups created strictly before now - retention_days expire; one exactly at the cutoff stays.

    The newest backup and any id in `protect` (the one just verified) are always kept, so retention
    can never leave zero backups.
    """
    cutoff = now - timedelta(days=retention_days)
    plan = RetentionPlan(cutoff)
    newest = max(refs, key=lambda r: (r.created_at, r.backup_id)) if refs else None
    for ref in sorted(refs, key=lambda r: (r.created_at, r.backup_id)):
        if ref.created_at < cutoff and ref is not newest and ref.backup_id not in protect:
            plan.delete.append(ref)
        else:
            plan.keep.append(ref)
    return plan
