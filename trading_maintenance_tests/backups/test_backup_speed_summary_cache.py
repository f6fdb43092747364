"""A listing takes each snapshot's summary from the repository's sealed summary cache when an earlier listing or
the backup that wrote it put it there, so a backup reads only its parent whole; a cache that does not open with
the key is ignored, and the check, retention and mirroring read every snapshot, so one that no longer reads is
still found."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from trading_maintenance.core.backups.repository import SUMMARY_CACHE, Repository
from trading_maintenance.core.backups.snapshots import check_repository, forget_and_prune, list_snapshots
from trading_maintenance_tests.backups.repository_helpers import backup_tree, write_tree

KEY = "summary-cache-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def three_snapshots(data_dir, tmp_path, key=KEY) -> Repository:
    files = write_tree(data_dir, files=3, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", key)
    for day in range(3):
        files[day].write_bytes(os.urandom(20_000))
        backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=day), key)
    return repo


def count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    real = Repository.read_snapshot_plaintext
    monkeypatch.setattr(Repository, "read_snapshot_plaintext", lambda self, name: reads.append(name) or real(self, name))
    return reads


def listed(listing) -> list[tuple]:
    return [(r.backup_id, r.name, r.created_at, r.size, listing.details[r.name]) for r in listing.refs]


def test_summaries_come_from_the_cache_and_list_exactly_as_read(tmp_path, data_dir, monkeypatch):
    repo = three_snapshots(data_dir, tmp_path)
    assert set(repo.load_summaries()) == set(repo.snapshot_ids())
    uncached = list_snapshots(repo, cached=False)
    reads = count_reads(monkeypatch)
    assert listed(list_snapshots(repo)) == listed(uncached) and reads == []
    parent = list_snapshots(repo, keep_newest=True)
    assert reads == [uncached.refs[-1].name]  # only the parent, for its members
    assert parent.newest["backup_id"] == uncached.refs[-1].backup_id and len(parent.newest.member_texts) == 3


def test_a_cache_that_does_not_open_with_the_key_is_ignored_and_rebuilt(tmp_path, data_dir, monkeypatch):
    repo = three_snapshots(data_dir, tmp_path)
    truth = listed(list_snapshots(repo, cached=False))
    other = Repository.open_or_create(tmp_path / "other", "another-key-0123456789abcdef")
    forged = {name: {**summary, "logical_bytes": 1} for name, summary in repo.load_summaries().items()}
    other.store_summaries(forged)  # sealed with another key
    (repo.root / SUMMARY_CACHE).write_bytes((other.root / SUMMARY_CACHE).read_bytes())
    assert repo.load_summaries() == {}
    reads = count_reads(monkeypatch)
    assert listed(list_snapshots(repo)) == truth and len(reads) == 3
    assert set(repo.load_summaries()) == set(repo.snapshot_ids())  # written again from what was read
    (repo.root / SUMMARY_CACHE).write_bytes((repo.root / SUMMARY_CACHE).read_bytes()[:-1])  # torn
    assert repo.load_summaries() == {} and listed(list_snapshots(repo)) == truth


def test_a_cached_snapshot_that_no_longer_reads_is_found_by_check_retention_and_the_parent(tmp_path, data_dir):
    repo = three_snapshots(data_dir, tmp_path)
    refs = list_snapshots(repo).refs
    newest = repo.root / "snapshots" / refs[-1].name
    newest.write_bytes(newest.read_bytes()[:-1] + b"\0")
    assert [r.name for r in list_snapshots(repo).refs] == [r.name for r in refs]  # the cache lists it
    assert any(refs[-1].name[:16] in p for p in check_repository(repo))
    parent = list_snapshots(repo, keep_newest=True)
    assert parent.newest["backup_id"] == refs[-2].backup_id and parent.unreadable == [refs[-1].name]
    assert refs[-1].name not in repo.load_summaries()  # dropped from the cache once found unreadable
    report = forget_and_prune(repo, retention_days=0, now=NOW + timedelta(days=30))
    assert report.removed_packs == 0 and any("prune skipped" in p for p in report.problems)


def test_forgotten_snapshots_leave_the_cache_and_an_unencrypted_repository_keeps_none(tmp_path, data_dir):
    repo = three_snapshots(data_dir, tmp_path)
    forget_and_prune(repo, retention_days=1, now=NOW + timedelta(days=2, hours=1))
    remaining = repo.snapshot_ids()
    assert len(remaining) < 3
    list_snapshots(repo)
    assert set(repo.load_summaries()) == set(remaining)

    plain = three_snapshots(tmp_path / "plain-data", tmp_path, key=None)
    assert not plain.keys.encrypted
    list_snapshots(plain)
    assert not (plain.root / SUMMARY_CACHE).exists() and plain.load_summaries() == {}


def test_a_cached_summary_that_does_not_hold_up_is_read_again_and_replaced(tmp_path, data_dir, monkeypatch):
    repo = three_snapshots(data_dir, tmp_path)
    truth = listed(list_snapshots(repo, cached=False))
    cache = repo.load_summaries()
    name = sorted(cache)[0]
    repo.store_summaries({**cache, name: {**cache[name], "files": -1}})  # sealed with the key, yet not a summary
    reads = count_reads(monkeypatch)
    assert listed(list_snapshots(repo)) == truth and reads == [name]
    assert repo.load_summaries() == cache  # written again from what was read
    assert listed(list_snapshots(repo)) == truth and reads == [name]
