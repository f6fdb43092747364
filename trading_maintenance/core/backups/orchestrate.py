"""After a backup is written: verify it, copy it off the host, apply retention, and check that the
new backup is still there. Every step after a failed one is skipped; every failure is a problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from trading_maintenance.core.backups.archive import list_local_backups, plan_backup_retention
from trading_maintenance.core.backups.archive_reader import identify_local_backups, verify_archive
from trading_maintenance.core.common.masking import mask_text


@dataclass
class AfterBackup:
    verified: bool = False
    remote_info: dict = field(default_factory=lambda: {"remote": "disabled"})
    local_deleted: list[str] = field(default_factory=list)
    remote_deleted: list[str] = field(default_factory=list)
    archive_problems: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def apply_retention(refs, days: int, now: datetime, protect: set[str], delete: Callable) -> tuple[list[str], list[str]]:
    """(deleted names, failures) after deleting what the retention plan drops; `protect` is kept."""
    deleted, failed = [], []
    for ref in plan_backup_retention(refs, days, now, protect).delete:
        try:
            delete(ref)
            deleted.append(ref.name)
        except Exception as exc:  # noqa: BLE001 - reported; the run fails
            failed.append(f"{ref.name}: {type(exc).__name__}")
    return deleted, failed


def after_backup(archive, secret: str | None, backups_dir: Path, local_days: int, remote, remote_days: int,
                 retention: bool, now: datetime, secrets: list[str]) -> AfterBackup:
    """Verify `archive`, upload it to `remote` (an object store, or None), then apply local and remote
    retention, never deleting `archive` itself."""
    outcome = AfterBackup()
    try:
        outcome.verified = verify_archive(archive.path, secret).manifest["backup_id"] == archive.backup_id
    except Exception as exc:  # noqa: BLE001 - a problem of this run, reported
        outcome.problems.append(mask_text(f"verification of the new archive failed: {exc}", secrets))
    if remote is not None and outcome.verified:
        try:
            uploaded = remote.upload(archive.path, archive.sha256)
            remote_problems = remote.verify(archive.name, archive.size, archive.sha256)
            outcome.problems += remote_problems
            outcome.remote_info = {"remote": uploaded["url"], "remote_verified": not remote_problems}
        except Exception as exc:  # noqa: BLE001
            outcome.problems.append(mask_text(f"upload to {remote.describe()} failed: {type(exc).__name__}: {exc}", secrets))
    if not (outcome.verified and not outcome.problems and retention):
        return outcome
    listing = identify_local_backups(backups_dir, secret)
    outcome.archive_problems = listing.problems
    deleted, failed = apply_retention(listing.refs, local_days, now, {archive.backup_id}, lambda ref: Path(ref.location).unlink())
    outcome.local_deleted, outcome.problems = deleted, outcome.problems + failed
    if remote is not None:
        try:
            deleted, failed = apply_retention(remote.list_backups(), remote_days, now, {archive.backup_id},
                                              lambda ref: remote.delete(ref.name))
            outcome.remote_deleted, outcome.problems = deleted, outcome.problems + failed
        except Exception as exc:  # noqa: BLE001
            outcome.problems.append(f"remote retention failed: {type(exc).__name__}")
    if archive.backup_id not in {ref.backup_id for ref in list_local_backups(backups_dir)}:
        outcome.problems.append("the new backup is missing after retention")
    return outcome
