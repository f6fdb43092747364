"""A tree of random files and a repository backup of it, for the repository tests."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.run import BackupOutcome, PlannedFile, collect_trading_files, create_backup
from trading_maintenance.core.backups.snapshots import select_snapshot


def write_tree(data_dir: Path, files: int, size: int) -> list[Path]:
    root = data_dir / "parquet" / "market_data"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i:02d}.bin").write_bytes(os.urandom(size))
    return sorted(root.iterdir())


def backup_tree(repo: Repository, data_dir: Path, tmp_path: Path, now: datetime, key: str) -> BackupOutcome:
    planned = [PlannedFile(f"data/{p.relative_to(data_dir).as_posix()}", str(p), p.stat().st_size)
               for p in sorted((data_dir / "parquet").rglob("*")) if p.is_file()]
    return create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=key, parts=["trading_data"], config_path=None,
                         effective_settings={}, secret_keys=set(), data_dir=data_dir, trading_files=planned, now=now,
                         work_root=tmp_path, repository=repo)


def assert_restores_exactly(repo: Repository, key: str, files: list[Path], data_dir: Path, stage: Path, snapshot: str = "latest") -> dict[Path, bytes]:
    """The files deleted and restored from `snapshot`: each comes back with the bytes it has now.
    Returns those bytes."""
    expected = {p: p.read_bytes() for p in files if p.exists()}
    for p in expected:
        p.unlink()
    restore_backup(select_snapshot(repo, snapshot).name, key, {"trading_data"}, stage_root=stage, data_dir=data_dir, repository=repo)
    assert {p: p.read_bytes() for p in expected} == expected
    return expected


def listed_backup(repo: Repository, root: Path, tmp_path: Path, now: datetime, key: str) -> BackupOutcome:
    """A backup of root's parquet tree as production plans it: the listing's stat goes with each file, so
    unchanged files are taken from the parent."""
    planned, _, _ = collect_trading_files(root, ["parquet"], 0, now)
    return create_backup(dest_dir=root / "out", fmt="tar.zst", secret=key, parts=["trading_data"], config_path=None,
                         effective_settings={}, secret_keys=set(), data_dir=root, trading_files=planned, now=now,
                         work_root=tmp_path, repository=repo)


def reseal_snapshot(repo: Repository, name: str, plaintext: bytes) -> str:
    """The snapshot replaced by `plaintext`, sealed with the key (as only a holder of the key could); its new name."""
    sealed = repo.keys.seal(plaintext, b"snapshot")
    new = hashlib.sha256(sealed).hexdigest()
    (repo.root / "snapshots" / new).write_bytes(sealed)
    (repo.root / "snapshots" / name).unlink()
    return new
