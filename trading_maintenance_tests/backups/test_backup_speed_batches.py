"""Small files read and encoded by the pool in batches, unchanged files waiting behind them, packs written
with writev: members keep the listing's order, a vanished file in a batch is reported alone, nothing is lost."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from trading_maintenance.core.backups import snapshot_writer
from trading_maintenance.core.backups.repository import CHUNK_MAX, Repository
from trading_maintenance.core.backups.run import collect_trading_files, create_backup
from trading_maintenance.core.backups.snapshots import check_repository
from trading_maintenance_tests.backups.repository_helpers import assert_restores_exactly

KEY = "batch-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _write(data_dir, count: int) -> list:
    root = data_dir / "parquet" / "market_data"
    paths = []
    for i in range(count):
        path = root / f"S{i % 7}" / f"{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = CHUNK_MAX + 1000 if i % 40 == 17 else 1000 + (i * 7919) % 60_000  # a few files of several chunks
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def _backup(repo, data_dir, tmp_path, now, drop=None):
    planned, _, _ = collect_trading_files(data_dir, ["parquet"], 0, now)
    if drop is not None:
        drop.unlink()  # listed, then gone before it is read
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=KEY, parts=["trading_data"], config_path=None,
                            effective_settings={}, secret_keys=set(), data_dir=data_dir, trading_files=planned, now=now,
                            work_root=tmp_path, repository=repo)
    return planned, outcome


def _restore_matches(repo, data_dir, tmp_path, paths):
    assert_restores_exactly(repo, KEY, paths, data_dir, tmp_path / "stage")


def test_batches_and_unchanged_files_keep_the_listing_order_and_restore_exactly(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(snapshot_writer, "SMALL_BATCH_FILES", 5)  # many batches, unchanged files between them
    paths = _write(data_dir, 130)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    planned, first = _backup(repo, data_dir, tmp_path, NOW)
    assert [m["name"] for m in first.archive.manifest["members"]] == [p.member for p in planned]
    changed = paths[3::9]
    for path in changed:
        path.write_bytes(os.urandom(path.stat().st_size + 1))
    vanished = changed[2]  # to be read (an unchanged file is taken from the parent by its listed stat alone)
    planned, second = _backup(repo, data_dir, tmp_path, NOW + timedelta(days=1), drop=vanished)
    members = second.archive.manifest["members"]
    assert [m["name"] for m in members] == [p.member for p in planned if p.path != str(vanished)]
    assert any(str(vanished) in w and "deleted" in w for w in second.warnings)
    assert second.archive.manifest["repository"]["reused_files"] == len(paths) - len(changed)
    by_name = {m["name"]: m for m in members}
    for p in planned:
        if p.path != str(vanished):
            assert by_name[p.member]["size"] == os.stat(p.path).st_size
    assert check_repository(repo, read_data=True) == []
    _restore_matches(repo, data_dir, tmp_path, paths)


def test_packs_written_in_pieces_by_a_kernel_that_writes_little_at_a_time(tmp_path, data_dir, monkeypatch):
    real_writev = os.writev
    calls = []

    def stingy_writev(fd, buffers):
        """Writes at most 777 bytes per call, cut inside a buffer: every partial write must be continued."""
        calls.append(len(buffers))
        budget, taken = 777, []
        for buffer in buffers:
            piece = bytes(buffer[:budget])
            taken.append(piece)
            budget -= len(piece)
            if not budget:
                break
        return real_writev(fd, taken)

    monkeypatch.setattr(snapshot_writer.os, "writev", stingy_writev)
    paths = _write(data_dir, 20)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    assert len(calls) > 100 and max(calls) > 1
    monkeypatch.setattr(snapshot_writer.os, "writev", real_writev)
    assert check_repository(repo, read_data=True) == []
    _restore_matches(repo, data_dir, tmp_path, paths)


def _open_packs() -> list[str]:
    """Files this process holds open whose name is a pack temporary's (removed or not)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.rsplit("/", 1)[-1].startswith(".pack-"):
            held.append(target)
    return held


def test_a_pack_that_cannot_be_made_durable_fails_the_backup_leaking_nothing(tmp_path, data_dir, monkeypatch):
    paths = _write(data_dir, 30)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    real_fsync = os.fsync

    def failing_fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".pack-"):
            raise OSError(5, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(snapshot_writer.os, "fsync", failing_fsync)
    try:
        _backup(repo, data_dir, tmp_path, NOW)
    except OSError as exc:
        assert exc.errno == 5
    else:
        raise AssertionError("the backup did not fail")
    monkeypatch.setattr(snapshot_writer.os, "fsync", real_fsync)
    assert _open_packs() == []  # every pack's descriptor closed
    assert not list((repo.root / "tmp").rglob(".pack-*")) and not repo.pack_ids()
    assert repo.snapshot_ids() == [] and repo.index_files() == []
    _backup(repo, data_dir, tmp_path, NOW)
    assert check_repository(repo, read_data=True) == []
    _restore_matches(repo, data_dir, tmp_path, paths)
