"""Placing restored files: the staged files made durable before the first rename, the renamed-into folders
after the last, each with one syncfs of the disk; folders made once; a file on another disk still copied."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from trading_maintenance.core.backups import restore_parts
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.snapshots import select_snapshot
from trading_maintenance_tests.backups.repository_helpers import backup_tree

KEY = "restore-apply-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _tree(data_dir, folders=3, per_folder=6):
    paths = []
    for f in range(folders):
        root = data_dir / "parquet" / "market_data" / f"SYM{f}" / "1min"
        root.mkdir(parents=True)
        for i in range(per_folder):
            path = root / f"2026-01-0{i + 1}.parquet"
            path.write_bytes(os.urandom(5_000 + i))
            paths.append(path)
    return paths


def test_one_syncfs_before_the_first_rename_and_one_after_the_last(tmp_path, data_dir, monkeypatch):
    files = _tree(data_dir)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    events = []
    real_syncfs, real_replace, real_mkdir = restore_parts._syncfs, os.replace, type(data_dir).mkdir
    monkeypatch.setattr(restore_parts, "_syncfs", lambda folder: events.append("syncfs") or real_syncfs(folder))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    made = []
    monkeypatch.setattr(type(data_dir), "mkdir", lambda self, *a, **k: made.append(self) or real_mkdir(self, *a, **k))
    target = tmp_path / "restored"
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    monkeypatch.undo()
    if not real_syncfs(target):
        return  # a kernel without syncfs: the fsync path is the other test's
    assert events == ["syncfs"] + ["rename"] * len(files) + ["syncfs"]
    folders = {target / p.parent.relative_to(data_dir) for p in files}
    calls = [p for p in made if p in folders]  # pathlib calls mkdir on a folder again after making its parents
    assert set(calls) == folders and all(calls.count(folder) <= 2 for folder in folders)  # not once per file
    assert all((target / p.relative_to(data_dir)).read_bytes() == p.read_bytes() for p in files)


def test_a_target_on_another_disk_is_copied_and_read_again(tmp_path, data_dir, monkeypatch):
    """The device differs (as if the data dir were another disk): no rename, an atomic copy checked by its SHA-256."""
    files = _tree(data_dir, folders=1, per_folder=3)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    hashed = []
    real_sha = restore_parts.sha256_file
    monkeypatch.setattr(restore_parts, "sha256_file", lambda p: hashed.append(p) or real_sha(p))
    real_stat = os.stat
    target = tmp_path / "restored"

    class OtherDevice:
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return getattr(self._st, name) + (1 if name == "st_dev" else 0)

    monkeypatch.setattr(os, "stat", lambda p, *a, **k: OtherDevice(real_stat(p, *a, **k)) if str(p).startswith(str(target)) else real_stat(p, *a, **k))
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    monkeypatch.undo()
    assert len([p for p in hashed if str(p).startswith(str(target))]) == len(files)
    assert all((target / p.relative_to(data_dir)).read_bytes() == p.read_bytes() for p in files)


def test_planning_resolves_targets_once_and_keeps_every_refusal(tmp_path, data_dir):
    """One lstat per target: a file already equal is left alone, a symlink inside the data dir is followed, one
    leading outside is refused, a folder where a file belongs is refused, and nothing is written outside."""
    import pytest

    from trading_maintenance.core.backups.archive import ArchiveError

    files = _tree(data_dir, folders=1, per_folder=4)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    target, outside = tmp_path / "restored", tmp_path / "elsewhere"
    folder = target / files[0].parent.relative_to(data_dir)
    folder.mkdir(parents=True)
    outside.mkdir()
    (folder / files[0].name).write_bytes(files[0].read_bytes())  # already equal: unchanged
    (target / "parquet" / "kept.bin").write_bytes(b"old")
    (folder / files[1].name).symlink_to(target / "parquet" / "kept.bin")  # inside: followed, replaced with --force
    run = lambda: restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage",  # noqa: E731
                                 data_dir=target, repository=repo, data_folders=("parquet",), force=True)
    (folder / files[2].name).mkdir()  # a folder where a file belongs
    with pytest.raises(ArchiveError, match="not a regular file"):
        run()
    (folder / files[2].name).rmdir()
    (folder / files[2].name).symlink_to(outside / "stolen")  # leads outside the data dir
    with pytest.raises(ArchiveError, match="outside"):
        run()
    assert list(outside.iterdir()) == [] and (target / "parquet" / "kept.bin").read_bytes() == b"old"
    (folder / files[2].name).unlink()
    report = run()
    assert report.plan["trading_data"]["unchanged"] == 1 and report.plan["trading_data"]["replace"] == 1
    assert report.plan["trading_data"]["create"] == 2
    assert (target / "parquet" / "kept.bin").read_bytes() == files[1].read_bytes()
    assert (folder / files[1].name).is_symlink()  # the link itself is kept, its file restored
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in files)


def test_folders_on_two_disks_get_one_syncfs_each_and_a_failing_one_falls_back_to_fsyncs(tmp_path, data_dir, monkeypatch):
    """A data folder holding another disk's mount point: each disk's folders are made durable by a syncfs of that
    disk; where that syncfs fails, each of its folders is fsynced."""
    files = _tree(data_dir, folders=3, per_folder=2)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    target = tmp_path / "restored"
    mounted = target / "parquet" / "market_data" / "SYM2"  # as if another disk were mounted here
    real_stat, real_syncfs, real_fsync_dir = os.stat, restore_parts._syncfs, restore_parts.fsync_dir

    class OtherDevice:
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return getattr(self._st, name) + (1 if name == "st_dev" else 0)

    monkeypatch.setattr(os, "stat", lambda p, *a, **k: OtherDevice(real_stat(p, *a, **k)) if str(p).startswith(str(mounted)) else real_stat(p, *a, **k))
    synced, folder_fsyncs = [], []
    outcomes = iter([True, True, False])  # the staged files, then the first disk's folders, then the other's: fails
    monkeypatch.setattr(restore_parts, "_syncfs", lambda folder: synced.append(folder) or (real_syncfs(folder) and next(outcomes)))
    monkeypatch.setattr(restore_parts, "fsync_dir", lambda folder: folder_fsyncs.append(folder) or real_fsync_dir(folder))
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    monkeypatch.undo()
    assert len(synced) == 3 and str(synced[2]).startswith(str(mounted)) and not str(synced[1]).startswith(str(mounted))
    assert folder_fsyncs == [mounted / "1min"]  # only the other disk's folder: its syncfs failed
    assert all((target / p.relative_to(data_dir)).read_bytes() == p.read_bytes() for p in files)
