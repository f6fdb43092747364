"""A tree of random files and a repository backup of it, for the repository tests."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.run import BackupOutcome, PlannedFile, create_backup


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
