"""One backup into the repository from start to finish, for the Dagster asset and the CLI alike:
snapshot, verify it, copy it to the object store, and only then retention (local, then remote),
after which the new snapshot is checked to still be there. Also the newest snapshot's drill."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from trading_maintenance.core.backups.archive import ArchiveError
from trading_maintenance.core.backups.drill import DrillReport, run_drill
from trading_maintenance.core.backups.remote_repository import RemoteRepository
from trading_maintenance.core.backups.repository import REPOSITORY_DIR, Repository, RepositoryError
from trading_maintenance.core.backups.run import BackupOutcome, create_backup
from trading_maintenance.core.backups.snapshots import forget_and_prune, list_snapshots, select_snapshot, stage_snapshot


@dataclass
class SnapshotFollowUp:
    """What happened after a snapshot was written: verification, the copy, retention."""

    verified: bool = False
    problems: list[str] = field(default_factory=list)
    remote: dict = field(default_factory=dict)
    local_forgotten: list[str] = field(default_factory=list)
    remote_forgotten: list[str] = field(default_factory=list)
    freed_bytes: int = 0


@dataclass
class RepositoryRun:
    outcome: BackupOutcome
    after: SnapshotFollowUp

    def summary(self) -> dict:
        after = self.after
        return {**self.outcome.summary(), "snapshot": self.outcome.archive.name, "new_bytes": self.outcome.archive.size,
                "verified": after.verified, "remote": after.remote, "local_forgotten": after.local_forgotten,
                "remote_forgotten": after.remote_forgotten, "freed_bytes": after.freed_bytes, "problems": after.problems}


def back_up_to_repository(
    *,
    backups_dir: Path,
    secret: str | None,
    now: datetime,
    local_retention_days: int,
    remote: Callable[[Repository], RemoteRepository] | None = None,
    remote_retention_days: int = 30,
    apply_retention: bool = True,
    **backup,
) -> RepositoryRun:
    """`backup` holds create_backup's arguments about what goes in (parts, stores, files, ...)."""
    repo = Repository.open_or_create(backups_dir, secret)
    outcome = create_backup(dest_dir=backups_dir, fmt="repository", secret=secret, now=now, repository=repo, **backup)
    return RepositoryRun(outcome, after_snapshot(repo, outcome.archive.backup_id, outcome.archive.name, now=now,
                                                 local_retention_days=local_retention_days, remote=remote,
                                                 remote_retention_days=remote_retention_days,
                                                 apply_retention=apply_retention))


def after_snapshot(repo: Repository, backup_id: str, snapshot: str, *, now: datetime, local_retention_days: int,
                   remote: Callable[[Repository], RemoteRepository] | None = None, remote_retention_days: int = 30,
                   apply_retention: bool = True) -> SnapshotFollowUp:
    """Verify the new snapshot, copy the repository to the store, then retention (local, then remote),
    never forgetting the new snapshot; every step after a failed one is skipped."""
    run = SnapshotFollowUp()
    try:
        with repo.lock(exclusive=False):
            stage_snapshot(repo, snapshot, None)
        run.verified = True
    except RepositoryError as exc:
        run.problems.append(f"the new snapshot does not verify: {exc}")
    copy = remote(repo) if remote is not None and run.verified else None
    if copy is not None:
        try:
            with repo.lock():
                sent = copy.mirror(remote_retention_days, now)
            run.remote = {"where": copy.describe(), "snapshots": sent.snapshots, "packs": sent.packs, "bytes": sent.bytes}
            if backup_id not in {r.backup_id for r in copy.list_snapshots().refs}:
                run.problems.append(f"the new snapshot is not in {copy.describe()} after the upload")
        except Exception as exc:  # noqa: BLE001 - reported; retention then waits for a good copy
            run.problems.append(f"copy to {copy.describe()} failed: {type(exc).__name__}: {str(exc)[:300]}")
    if not apply_retention or not run.verified or run.problems:
        return run
    with repo.lock():
        local = forget_and_prune(repo, local_retention_days, now, protect={backup_id})
    run.local_forgotten, run.freed_bytes = local.forgotten, local.freed_bytes
    run.problems += local.problems
    if copy is not None:
        try:
            with repo.lock():
                remote_report = copy.forget_and_prune(remote_retention_days, now, protect={backup_id})
            run.remote_forgotten = remote_report.forgotten
            run.problems += remote_report.problems
        except Exception as exc:  # noqa: BLE001
            run.problems.append(f"remote retention in {copy.describe()} failed: {type(exc).__name__}: {str(exc)[:300]}")
    if backup_id not in {r.backup_id for r in list_snapshots(repo).refs}:
        run.problems.append("the new snapshot is missing after retention")
    return run


def drill_snapshot(backups_dir: Path, secret: str | None, which: str, *, work_root: Path, scratch_redis=None,
                   pg_admin_url: str | None = None, dry_run: bool = False) -> DrillReport | None:
    """The drill of a snapshot (`latest` = the newest); None when there is no repository with snapshots,
    or `which` names no snapshot (it may name an archive). A dry run reads and verifies every chunk of
    the snapshot and restores nothing."""
    if not (Path(backups_dir) / REPOSITORY_DIR / "config.json").exists():
        return None
    repo = Repository.open_or_create(backups_dir, secret, create=False)
    if not repo.snapshot_ids():
        return None
    try:
        ref = select_snapshot(repo, which)
    except ArchiveError:
        if which in ("", "latest"):
            raise
        return None
    if not dry_run:
        return run_drill(ref.name, secret, work_root=work_root, scratch_redis=scratch_redis, pg_admin_url=pg_admin_url,
                         repository=repo)
    report = DrillReport(ref.backup_id, ref.location)
    with repo.lock(exclusive=False):
        staged = stage_snapshot(repo, ref.name, work_root)
    report.add("archive", True, f"{len(staged.staged)} members, every chunk and checksum verified (dry run: nothing restored)")
    return report
