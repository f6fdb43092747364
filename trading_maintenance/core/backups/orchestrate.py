"""After a backup is written: verify it, copy it off the host, apply retention, and check that the
new backup is still there. Every step after a failed one is skipped; every failure is a problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from trading_maintenance.core.backups.archive import list_local_backups, plan_backup_retention
from trading_maintenance.core.backups.archive_reader import identify_local_backups, verify_archive
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.repository_run import after_snapshot
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
    retention, never deleting `archive` itself. A repository snapshot is followed up in the repository."""
    if archive.manifest.get("format") == "repository":
        return _after_snapshot(archive, secret, backups_dir, local_days, remote, remote_days, retention, now, secrets)
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


def _after_snapshot(snapshot, secret: str | None, backups_dir: Path, local_days: int, remote, remote_days: int,
                    retention: bool, now: datetime, secrets: list[str]) -> AfterBackup:
    """The snapshot verified, the repository copied to `remote`, snapshot retention local and remote;
    archives of earlier versions beside the repository age out under the same local retention."""
    repo = Repository.open_or_create(backups_dir, secret, create=False)
    after = after_snapshot(repo, snapshot.backup_id, snapshot.name, now=now, local_retention_days=local_days,
                           remote=remote.repository if remote is not None else None, remote_retention_days=remote_days,
                           apply_retention=retention)
    outcome = AfterBackup(verified=after.verified, local_deleted=list(after.local_forgotten),
                          remote_deleted=list(after.remote_forgotten),
                          problems=[mask_text(problem, secrets) for problem in after.problems])
    if after.remote:
        outcome.remote_info = {"remote": after.remote["where"], "remote_verified": not after.problems,
                               "remote_new_bytes": after.remote["bytes"]}
    if retention and after.verified and not after.problems:
        listing = identify_local_backups(backups_dir, secret)
        outcome.archive_problems = listing.problems
        deleted, failed = apply_retention(listing.refs, local_days, now, set(), lambda ref: Path(ref.location).unlink())
        outcome.local_deleted += deleted
        outcome.problems += failed
    return outcome
