"""The content-addressed repository: dedup, parent reuse, verified restore, crash repair, retention, check, lock, export."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from trading_maintenance.core.backups.archive_reader import verify_archive
from trading_maintenance.core.backups.repository import CHUNK_MIN, BlobRef, Repository, RepositoryError
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.run import PlannedFile, create_backup
from trading_maintenance.core.backups.snapshots import (
    check_repository,
    export_snapshot,
    forget_and_prune,
    list_snapshots,
    repair,
    select_snapshot,
    stage_snapshot,
)
from trading_maintenance_tests.backups.repository_helpers import backup_tree, write_tree

KEY = "repository-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _tree(data_dir, files=12, size=300_000):
    return write_tree(data_dir, files, size)


def _backup(repo, data_dir, tmp_path, now):
    return backup_tree(repo, data_dir, tmp_path, now, KEY)


def test_second_backup_stores_only_changed_bytes_and_restores_exactly(tmp_path, data_dir):
    files = _tree(data_dir)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = _backup(repo, data_dir, tmp_path, NOW)
    files[3].write_bytes(os.urandom(300_000))
    second = _backup(repo, data_dir, tmp_path, NOW + timedelta(days=1))
    listing = list_snapshots(repo)
    assert [r.backup_id for r in listing.refs] == [first.archive.backup_id, second.archive.backup_id]
    assert second.archive.size < first.archive.size / 5  # new bytes: one file of twelve
    assert second.archive.manifest["repository"]["reused_files"] == 11
    expected = {p: p.read_bytes() for p in files}
    for p in files:
        p.unlink()
    latest = select_snapshot(repo, "latest")
    report = restore_backup(latest.name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=data_dir,
                            repository=repo)
    assert report.backup_id == second.archive.backup_id
    assert {p: p.read_bytes() for p in files} == expected
    assert check_repository(repo, read_data=True) == []


def test_altered_chunk_is_found_and_refused_before_any_target_is_written(tmp_path, data_dir):
    files = _tree(data_dir, files=3)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    pack = next(iter(repo.pack_ids()))
    path = repo.pack_path(pack)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert check_repository(repo) == []  # structure is intact
    assert any("failed authentication" in p for p in check_repository(repo, read_data=True))
    for p in files:
        p.unlink()
    with pytest.raises(RepositoryError, match="failed authentication"):
        restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage",
                       data_dir=data_dir, repository=repo)
    assert not any(p.exists() for p in files)


def test_unindexed_pack_is_reindexed_and_missing_pack_is_reported_never_used(tmp_path, data_dir):
    _tree(data_dir, files=4)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    for name in repo.index_files():  # a crash after the packs, before their index
        (repo.root / "index" / name).unlink()
    assert any("not listed in any index" in p for p in check_repository(repo))
    fixed = repair(repo)
    assert fixed.reindexed_packs and check_repository(repo, read_data=True) == []

    lost = next(iter(repo.pack_ids()))
    repo.pack_path(lost).unlink()
    assert any("missing" in p for p in check_repository(repo))
    with pytest.raises(RepositoryError, match="missing|no index"):
        stage_snapshot(repo, select_snapshot(repo).name, tmp_path / "s")
    assert repair(repo).dropped_index_entries == [lost]
    third = _backup(repo, data_dir, tmp_path, NOW + timedelta(days=1))  # the lost chunks are stored again
    assert third.archive.size > 0
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=data_dir,
                   repository=repo, force=True)


def test_retention_forgets_old_snapshots_and_prunes_their_packs_only(tmp_path, data_dir):
    files = _tree(data_dir, files=3)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW - timedelta(days=10))
    for p in files:
        p.write_bytes(os.urandom(300_000))
    newest = _backup(repo, data_dir, tmp_path, NOW)
    packs_before = repo.pack_ids()
    dry = forget_and_prune(repo, 7, NOW, dry_run=True)
    assert len(dry.forgotten) == 1 and repo.pack_ids() == packs_before and len(list_snapshots(repo).refs) == 2
    done = forget_and_prune(repo, 7, NOW)
    assert done.removed_packs >= 1 and done.freed_bytes > 0
    assert [r.backup_id for r in list_snapshots(repo).refs] == [newest.archive.backup_id]
    assert check_repository(repo, read_data=True) == []


def test_repository_lock_excludes_a_second_writer(data_dir):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    with repo.lock():
        with pytest.raises(RepositoryError, match="locked"):
            with Repository.open_or_create(data_dir / "backups", KEY).lock(wait=0.3):
                pass


def test_wrong_key_and_missing_key_are_named(data_dir):
    Repository.open_or_create(data_dir / "backups", KEY)
    with pytest.raises(RepositoryError, match="wrong encryption key"):
        Repository.open_or_create(data_dir / "backups", "another-key")
    with pytest.raises(RepositoryError, match="BACKUP_ENCRYPTION_KEY"):
        Repository.open_or_create(data_dir / "backups", None)


def test_snapshot_exports_as_one_verifiable_archive(tmp_path, data_dir):
    files = _tree(data_dir, files=3)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    outcome = _backup(repo, data_dir, tmp_path, NOW)
    result = export_snapshot(repo, outcome.archive.name, tmp_path / "export", KEY)
    verified = verify_archive(result.path, KEY)
    assert verified.manifest["backup_id"] == outcome.archive.backup_id
    assert sorted(m["name"] for m in verified.members("trading_data")) == sorted(
        f"data/{p.relative_to(data_dir).as_posix()}" for p in files)


def test_cli_lists_checks_restores_and_exports_snapshots(tmp_path, data_dir, monkeypatch):
    import click
    from click.testing import CliRunner

    from trading_maintenance.cli_ext.backups import register
    from trading_maintenance_tests.conftest import write_config

    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, data_dir)))
    for var in ("DATABASE_URL", "BACKUP_ENCRYPTION_KEY", "TRADING_DATA_DIR", "BACKUP_REMOTE_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    files = _tree(data_dir, files=3)
    repo = Repository.open_or_create(data_dir / "backups", None)
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=None, parts=["trading_data"], config_path=None,
                            effective_settings={}, secret_keys=set(), data_dir=data_dir, now=NOW, work_root=tmp_path,
                            trading_files=[PlannedFile(f"data/{p.relative_to(data_dir).as_posix()}", str(p), p.stat().st_size)
                                           for p in files], repository=repo)
    group = click.Group("trading-maintenance")
    register(group)
    runner = CliRunner()
    listed = runner.invoke(group, ["backups", "list"])
    assert listed.exit_code == 0 and outcome.archive.backup_id in listed.output and outcome.archive.name[:16] in listed.output
    checked = runner.invoke(group, ["backups", "check", "--read-data"])
    assert checked.exit_code == 0 and "0 problems" in checked.output
    files[0].unlink()
    restored = runner.invoke(group, ["restore", "--type", "trading_data", "--date", "2026-03-02"])
    assert restored.exit_code == 0, restored.output
    assert files[0].exists()
    exported = runner.invoke(group, ["backups", "export", "latest", "--to", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    assert verify_archive(next((tmp_path / "out").iterdir())).manifest["backup_id"] == outcome.archive.backup_id


def test_a_rerun_reads_the_index_and_each_snapshot_once_and_no_unchanged_file(tmp_path, data_dir, monkeypatch):
    files = _tree(data_dir, files=6, size=50_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    for day in range(3):
        _backup(repo, data_dir, tmp_path, NOW + timedelta(days=day))
    files[2].write_bytes(os.urandom(50_000))
    newest = list_snapshots(repo).refs[-1].name
    calls = {"index": 0, "snapshots": [], "opened": []}
    real_load, real_read, real_open = Repository.load_index, Repository.read_snapshot_plaintext, open

    def counting_load(self):
        calls["index"] += 1
        return real_load(self)

    def counting_read(self, name):
        calls["snapshots"].append(name)
        return real_read(self, name)

    def counting_open(path, *args, **kwargs):
        if str(path).startswith(str(data_dir / "parquet")):
            calls["opened"].append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Repository, "load_index", counting_load)
    monkeypatch.setattr(Repository, "read_snapshot_plaintext", counting_read)
    monkeypatch.setattr(Repository, "read_snapshot", lambda self, name: pytest.fail("a snapshot read a second time"))
    monkeypatch.setattr("builtins.open", counting_open)
    outcome = _backup(repo, data_dir, tmp_path, NOW + timedelta(days=3))
    assert calls["index"] == 1
    # the newest once, kept from the listing as the parent; the others listed by the summaries the backups that
    # wrote them left in the repository's cache
    assert calls["snapshots"] == [newest]
    assert outcome.archive.manifest["repository"]["reused_files"] == 5
    assert calls["opened"] == [str(files[2])]  # the unchanged files are recognised without being opened


def test_tree_listing_skips_symlinks_of_files_and_folders_and_old_daily_files(tmp_path, data_dir):
    from trading_maintenance.core.backups.run import collect_trading_files

    market = data_dir / "parquet" / "market_data" / "AAPL"
    market.mkdir(parents=True)
    (market / "2020-01-02.parquet").write_bytes(b"old")
    (market / "2026-03-01.parquet").write_bytes(b"new")
    (market / "notes.txt").write_bytes(b"n")
    (market / ".x.tmp").write_bytes(b"t")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (market / "linked-folder").symlink_to(outside)
    (market / "linked-file").symlink_to(outside / "secret")
    files, skipped, excluded = collect_trading_files(data_dir, ["parquet", "../outside"], 30, NOW)
    assert [f.member for f in files] == ["data/parquet/market_data/AAPL/2026-03-01.parquet",
                                         "data/parquet/market_data/AAPL/notes.txt"]
    assert excluded == 1 and len(skipped) == 2 and all("symlink" in s for s in skipped)


def test_data_cleanup_never_touches_the_repository_however_old(tmp_path, data_dir):
    import time as clock

    from trading_maintenance.core.hygiene.cleanup import Category, plan_cleanup
    from trading_maintenance.core.hygiene.file_names import is_managed_backup

    _tree(data_dir, files=3)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    _backup(repo, data_dir, tmp_path, NOW + timedelta(days=1))  # identical snapshot files beside each other
    stray = data_dir / "backups" / "old-notes.txt"
    stray.write_bytes(b"x")
    past = clock.time() - 90 * 86400
    for path in (data_dir / "backups").rglob("*"):
        os.utime(path, (past, past))
    category = Category("backups", str(data_dir / "backups"), 7, dedupe=True, dedupe_min_bytes=1, exclude=is_managed_backup)
    plan = plan_cleanup([category], data_dir, clock.time())[0]
    touched = [e.path for e in plan.delete] + [str(d) for d in plan.duplicates] + [e.path for e in plan.compress]
    assert not any("/repository/" in str(p) for p in touched), touched
    assert [e.path for e in plan.delete] == [str(stray)]  # the category still works beside it


def test_key_cache_spares_scrypt_yet_refuses_a_wrong_key_and_stays_private(data_dir, private_key_cache, monkeypatch):
    from trading_maintenance.core.backups import repository as repository_module

    backups = data_dir / "backups"
    created = Repository.open_or_create(backups, KEY)
    cached = list(private_key_cache.iterdir())
    assert len(cached) == 1 and (cached[0].stat().st_mode & 0o777) == 0o600
    assert (private_key_cache.stat().st_mode & 0o777) == 0o700
    assert not [p for p in backups.rglob("*") if p.name == cached[0].name]
    assert KEY.encode() not in cached[0].read_bytes()

    def no_scrypt(secret, salt):
        raise AssertionError("scrypt ran although the key cache holds this repository's key")

    with monkeypatch.context() as patched:
        patched.setattr(repository_module, "derive_master", no_scrypt)
        reopened = Repository.open_or_create(backups, KEY, create=False)
    assert reopened.keys.id_key == created.keys.id_key and reopened.keys.check == created.keys.check

    with pytest.raises(RepositoryError, match="wrong encryption key"):
        Repository.open_or_create(backups, "another-key")
    assert len(list(private_key_cache.iterdir())) == 1

    # a cache file that is not private, is corrupt or holds another key is ignored: scrypt again, same
    # keys, and the cache written anew (0600, the right key)
    import json

    original = json.loads(cached[0].read_text())
    for mode, content in [(0o644, json.dumps(original)), (0o600, json.dumps({**original, "master": "11" * 32})),
                          (0o600, "{not json")]:
        cached[0].write_text(content)
        cached[0].chmod(mode)
        derived: list[int] = []
        with monkeypatch.context() as patched:
            patched.setattr(repository_module, "derive_master",
                            lambda s, salt, derived=derived, real=repository_module.derive_master: derived.append(1) or real(s, salt))
            assert Repository.open_or_create(backups, KEY).keys.id_key == created.keys.id_key
        assert derived == [1]
        assert json.loads(cached[0].read_text()) == original and (cached[0].stat().st_mode & 0o777) == 0o600

def test_key_cache_inside_the_backups_folder_is_never_used(data_dir):
    backups = data_dir / "backups"
    Repository.open_or_create(backups, KEY, key_cache=backups / "keys")
    Repository.open_or_create(backups, KEY, key_cache=backups / "keys")
    assert not (backups / "keys").exists()


@pytest.mark.parametrize("entry", [["ab" * 32, 0, 10], ["ab" * 32, -1, 10, 10], ["AB" * 32, 0, 10, 10], ["ab" * 32, 0, True, 10],
                                   ["ab" * 32, 0, 10, 1 << 30], "ab" * 32, ["ab" * 32, 0, 10, 10, 0],
                                   ["ef" * 32, -1, 5, 5], [["ab" * 32], 0, 10, 10], ["ab" * 31 + "\nab", 0, 10, 10],
                                   ["ab" * 31 + " a", 0, 10, 10], ["ab" * 31 + "\u00e9a", 0, 10, 10], [b"ab" * 32, 0, 10, 10],
                                   ["ab" * 32, 0.0, 10, 10]])
def test_index_entry_of_the_wrong_shape_is_refused(data_dir, entry):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    name, sealed = repo.seal_index({"cd" * 32: [["ef" * 32, 0, 5, 5], entry]})
    (repo.root / "index" / name).write_bytes(sealed)
    with pytest.raises(RepositoryError, match="invalid entry"):
        repo.load_index()
    name, sealed = repo.seal_index({"cd" * 32: [["ef" * 32, 0, 5, 5]]})
    (repo.root / "index" / name).write_bytes(sealed)
    for other in repo.index_files():
        if other != name:
            (repo.root / "index" / other).unlink()
    assert list(repo.load_index()[0]) == ["ef" * 32]


def test_an_id_listed_twice_keeps_its_first_entry(data_dir):
    """Within a pack and across packs, as the entry-by-entry reader did."""
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    name, sealed = repo.seal_index({"cd" * 32: [["ef" * 32, 0, 5, 5], ["ab" * 32, 5, 6, 6], ["ef" * 32, 11, 7, 7]],
                                    "ce" * 32: [["ab" * 32, 0, 8, 8], ["12" * 32, 8, 9, 9]]})
    (repo.root / "index" / name).write_bytes(sealed)
    index, _ = repo.load_index()
    assert list(index) == ["ef" * 32, "ab" * 32, "12" * 32]
    assert index["ef" * 32] == BlobRef("cd" * 32, 0, 5, 5) and index["ab" * 32] == BlobRef("cd" * 32, 5, 6, 6)
    assert index["12" * 32] == BlobRef("ce" * 32, 8, 9, 9) and type(index["12" * 32]) is BlobRef


def test_listing_stat_reuses_unchanged_files_and_rereads_one_of_the_same_size_with_a_new_mtime(tmp_path, data_dir, monkeypatch):
    from trading_maintenance.core.backups.run import collect_trading_files

    files = _tree(data_dir, files=5, size=40_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)

    def backup(now):
        listed, _, _ = collect_trading_files(data_dir, ["parquet"], 0, now)
        assert all(p.stat is not None for p in listed)
        return create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=KEY, parts=["trading_data"], config_path=None,
                             effective_settings={}, secret_keys=set(), data_dir=data_dir, trading_files=listed, now=now,
                             work_root=tmp_path, repository=repo)

    backup(NOW)
    new_content = os.urandom(40_000)
    files[1].write_bytes(new_content)
    st = files[1].stat()
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    os.utime(files[3], ns=(st.st_atime_ns, files[3].stat().st_mtime_ns + 1_000_000_000))  # touched, same bytes
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: (opened.append(str(path)) if str(path).startswith(
        str(data_dir / "parquet")) else None) or real_open(path, *a, **k))
    outcome = backup(NOW + timedelta(days=1))
    monkeypatch.undo()
    assert sorted(opened) == sorted([str(files[1]), str(files[3])])
    assert outcome.archive.manifest["repository"]["reused_files"] == 3
    members = {m["name"]: m for m in outcome.archive.manifest["members"]}
    assert members[f"data/{files[1].relative_to(data_dir).as_posix()}"]["stat"][1] == files[1].stat().st_mtime_ns
    target = tmp_path / "restored"
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    assert (target / files[1].relative_to(data_dir)).read_bytes() == new_content
    assert (target / files[3].relative_to(data_dir)).read_bytes() == files[3].read_bytes()


@pytest.mark.parametrize("alter", ["append", "replace"])
def test_staged_file_altered_after_verification_is_read_again_and_refused(tmp_path, data_dir, monkeypatch, alter):
    from trading_maintenance.core.backups.restore import RestoreFailed
    from trading_maintenance.core.backups.restore_parts import TradingDataPart

    files = _tree(data_dir, files=3, size=60_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    real_apply = TradingDataPart.apply

    def altering_apply(self):
        staged = self.verified.staged[sorted(self.verified.staged)[1]]
        if alter == "append":
            with open(staged, "ab") as handle:
                handle.write(b"x")
        else:  # same size, another file (inode) under the staged name
            staged.with_name("other").write_bytes(os.urandom(60_000))
            os.replace(staged.with_name("other"), staged)
        return real_apply(self)

    monkeypatch.setattr(TradingDataPart, "apply", altering_apply)
    target = tmp_path / "restored"
    with pytest.raises(RestoreFailed, match="does not match the backup after restoring"):
        restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                       repository=repo, data_folders=("parquet",))
    assert not [p for p in target.rglob("*") if p.is_file()]  # rolled back: every created file removed
    monkeypatch.undo()
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    assert [(target / p.relative_to(data_dir)).read_bytes() == p.read_bytes() for p in files] == [True] * 3


def test_restore_target_through_a_symlinked_folder_outside_the_data_dir_is_refused(tmp_path, data_dir):
    _tree(data_dir, files=2, size=10_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    target, outside = tmp_path / "restored", tmp_path / "elsewhere"
    (target / "parquet").mkdir(parents=True)
    outside.mkdir()
    (target / "parquet" / "market_data").symlink_to(outside)
    with pytest.raises(Exception, match="outside"):
        restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                       repository=repo, data_folders=("parquet",))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("syncfs_works", [True, False])
def test_restored_files_and_folders_are_made_durable_by_one_syncfs_each_or_else_one_fsync_each(tmp_path, data_dir, monkeypatch, syncfs_works):
    from trading_maintenance.core.backups import restore_parts

    files = _tree(data_dir, files=4, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    synced, fsynced = [], []
    real_syncfs, real_fsync = restore_parts._syncfs, os.fsync
    monkeypatch.setattr(restore_parts, "_syncfs", lambda folder: synced.append(folder) or (syncfs_works and real_syncfs(folder)))
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(os.fstat(fd).st_mode) or real_fsync(fd))
    target = tmp_path / "restored"
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    monkeypatch.undo()
    assert len(synced) == (2 if syncfs_works else 1)  # the files before the renames, the folders after them
    import stat

    regular = [mode for mode in fsynced if stat.S_ISREG(mode)]
    assert len(regular) == (0 if syncfs_works else 4)
    folders = [mode for mode in fsynced if stat.S_ISDIR(mode)]
    assert (len(folders) == 0) == syncfs_works
    assert all((target / p.relative_to(data_dir)).read_bytes() == p.read_bytes() for p in files)


def _listed(data_dir, paths):
    planned = []
    for p in paths:
        st = p.stat()
        planned.append(PlannedFile(f"data/{p.relative_to(data_dir).as_posix()}", str(p), st.st_size,
                                   (st.st_size, st.st_mtime_ns, st.st_ino)))
    return planned


def test_small_files_encoded_in_the_pool_keep_their_order_and_a_vanished_or_grown_file_is_handled(tmp_path, data_dir):
    """Files of one chunk are read and encoded in pool threads: the snapshot lists members in the listing's
    order, a file deleted after the listing is reported and left out, a file grown past one chunk is chunked
    whole, duplicates are stored once, and the restore gives back every byte."""
    root = data_dir / "parquet" / "market_data"
    root.mkdir(parents=True)
    sizes = [0, 1, 4096, 150_000, 700_000, 90_000, 200_000, 30_000] * 5
    paths = []
    for i, size in enumerate(sizes):
        p = root / f"s{i:03d}.bin"
        p.write_bytes(os.urandom(size) if i % 7 else b"same bytes " * (size // 11))
        paths.append(p)
    planned = _listed(data_dir, paths)
    vanished, grown = paths[5], paths[9]
    vanished.unlink()
    grown.write_bytes(os.urandom(CHUNK_MIN * 3))
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=KEY, parts=["trading_data"], config_path=None,
                            effective_settings={}, secret_keys=set(), data_dir=data_dir, trading_files=planned, now=NOW,
                            work_root=tmp_path, repository=repo)
    members = [m["name"] for m in outcome.archive.manifest["members"]]
    assert members == [p.member for p in planned if p.path != str(vanished)]
    assert outcome.files == len(paths) - 1
    assert any(str(vanished) in w and "deleted" in w for w in outcome.warnings)
    grown_entry = next(m for m in outcome.archive.manifest["members"] if m["name"].endswith(grown.name))
    assert grown_entry["size"] == CHUNK_MIN * 3 and len(grown_entry["chunks"]) >= 1
    expected = {p: p.read_bytes() for p in paths if p.exists()}
    for p in expected:
        p.unlink()
    restore_backup(select_snapshot(repo, "latest").name, KEY, {"trading_data"}, stage_root=tmp_path / "stage",
                   data_dir=data_dir, repository=repo)
    assert {p: p.read_bytes() for p in expected} == expected
    assert check_repository(repo, read_data=True) == []


def test_new_repositories_use_hmac_sha256_chunk_ids_and_a_first_format_repository_still_reads(tmp_path, data_dir):
    _tree(data_dir, files=3, size=50_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    config_path = repo.root / "config.json"
    assert json.loads(config_path.read_text())["chunk_id"] == "hmac-sha256"
    assert repo.keys.chunk_id(b"x") == hmac.new(repo.keys.id_key, hashlib.sha256(b"x").digest(), "sha256").hexdigest()

    old = data_dir / "old"
    (old / "parquet").mkdir(parents=True)
    shutil.copytree(data_dir / "parquet", old / "parquet", dirs_exist_ok=True)
    first_format = Repository.open_or_create(old / "backups", KEY)
    config = json.loads((first_format.root / "config.json").read_text())
    del config["chunk_id"]  # as the first landing wrote it
    (first_format.root / "config.json").write_text(json.dumps(config))
    reopened = Repository.open_or_create(old / "backups", KEY)
    assert reopened.keys.chunk_id(b"x") == hashlib.blake2b(b"x", key=reopened.keys.id_key, digest_size=32).hexdigest()
    _backup(reopened, old, tmp_path, NOW)
    assert check_repository(Repository.open_or_create(old / "backups", KEY), read_data=True) == []

    config["chunk_id"] = "md5"
    (first_format.root / "config.json").write_text(json.dumps(config))
    with pytest.raises(RepositoryError, match="'chunk_id'"):
        Repository.open_or_create(old / "backups", KEY)
