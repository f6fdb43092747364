"""The repository's compression level (config "zstd_level", default 2): new chunks are written at it, chunks
of every level read and restore alike, an invalid level is refused before anything is written."""

from __future__ import annotations

import json
import os
import random
from datetime import datetime, timedelta, timezone

import pytest
import zstandard

from trading_maintenance.core.backups import snapshot_writer
from trading_maintenance.core.backups.repository import DEFAULT_ZSTD_LEVEL, Repository, RepositoryError
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.snapshots import check_repository, select_snapshot
from trading_maintenance_tests.backups.repository_helpers import backup_tree

KEY = "zstd-level-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _compressible(data_dir, name: str, seed: int) -> None:
    """Text-like bytes: zstd's levels store them at clearly different sizes."""
    root = data_dir / "parquet" / "market_data"
    root.mkdir(parents=True, exist_ok=True)
    words = [os.urandom(3).hex() for _ in range(400)]
    rng = random.Random(seed)
    (root / name).write_text(" ".join(rng.choice(words) for _ in range(40_000)))


def _set_level(repo: Repository, level) -> Repository:
    path = repo.root / "config.json"
    config = json.loads(path.read_text())
    config["zstd_level"] = level
    path.write_text(json.dumps(config))
    return Repository.open_or_create(repo.root.parent, KEY)


def test_new_chunks_use_the_configured_level_and_every_level_restores(tmp_path, data_dir, monkeypatch):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    assert repo.zstd_level == DEFAULT_ZSTD_LEVEL == 2 and "zstd_level" not in json.loads((repo.root / "config.json").read_text())
    levels = []
    real = zstandard.ZstdCompressor

    def recording(level=0, **kwargs):
        levels.append(level)
        return real(level=level, **kwargs)

    monkeypatch.setattr(snapshot_writer.zstandard, "ZstdCompressor", recording)
    for day, level in enumerate((None, 19, 1, 3)):
        repo = _set_level(repo, level) if level else repo
        levels.clear()
        _compressible(data_dir, f"{day}.txt", day)
        outcome = backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=day), KEY)
        assert outcome.archive.size > 0 and levels and set(levels) == {level or DEFAULT_ZSTD_LEVEL}
    monkeypatch.setattr(snapshot_writer.zstandard, "ZstdCompressor", real)
    assert check_repository(repo, read_data=True) == []  # chunks of levels 2, 19, 1 and 3 read alike
    files = sorted((data_dir / "parquet").rglob("*.txt"))
    expected = {p: p.read_bytes() for p in files}
    for p in files:
        p.unlink()
    restore_backup(select_snapshot(repo, "latest").name, KEY, {"trading_data"}, stage_root=tmp_path / "stage",
                   data_dir=data_dir, repository=repo)
    assert {p: p.read_bytes() for p in files} == expected


@pytest.mark.parametrize("level", [0, 20, "3", 2.5, True, None])
def test_an_invalid_level_is_refused(data_dir, level):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    with pytest.raises(RepositoryError, match="'zstd_level'"):
        _set_level(repo, level)
