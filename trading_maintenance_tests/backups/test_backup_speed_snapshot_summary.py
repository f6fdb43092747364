"""Snapshots begin with a summary, so listing them decodes no members; snapshots written before summaries are
still listed, chosen, used as a backup's parent and restored; a newest snapshot whose members or summary do
not hold up is left out, never used as the parent."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

from trading_maintenance.core.backups import snapshots as snapshots_module
from trading_maintenance.core.backups.parent_members import split_members
from trading_maintenance.core.backups.repository import Repository, snapshot_summary
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.snapshots import check_repository, list_snapshots, select_snapshot
from trading_maintenance_tests.backups.repository_helpers import backup_tree, listed_backup, reseal_snapshot, write_tree

KEY = "summary-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _rewrite(repo: Repository, name: str, document: dict, sort_keys: bool = True) -> str:
    """The snapshot replaced by one holding `document` as given (sort_keys: as the first format wrote it)."""
    sealed = repo.keys.seal(json.dumps(document, sort_keys=sort_keys, separators=(",", ":")).encode(), b"snapshot")
    new = hashlib.sha256(sealed).hexdigest()
    (repo.root / "snapshots" / new).write_bytes(sealed)
    (repo.root / "snapshots" / name).unlink()
    return new


def test_listing_reads_summaries_and_keeps_the_parents_members_as_lines(tmp_path, data_dir, monkeypatch):
    files = write_tree(data_dir, files=4, size=30_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    outcomes = []
    for day in range(3):
        files[day].write_bytes(os.urandom(30_000 + day))
        outcomes.append(backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=day), KEY))
    plaintext = repo.read_snapshot_plaintext(outcomes[-1].archive.name)
    summary = snapshot_summary(plaintext)
    assert summary["backup_id"] == outcomes[-1].archive.backup_id and summary["files"] == 4
    assert json.loads(plaintext)["members"] == outcomes[-1].archive.manifest["members"]
    decoded = []
    real = snapshots_module.manifest_members
    monkeypatch.setattr(snapshots_module, "manifest_members", lambda m, label: decoded.append(label) or real(m, label))
    listing = list_snapshots(repo, keep_newest=True)
    assert [r.backup_id for r in listing.refs] == [o.archive.backup_id for o in outcomes]
    assert decoded == []  # the parent's members are kept as its lines, each decoded only if a file needs it
    assert listing.newest["backup_id"] == outcomes[-1].archive.backup_id and "members" not in listing.newest
    assert [json.loads(line) for line in listing.newest.member_texts] == json.loads(plaintext)["members"]
    for outcome in outcomes:
        members = outcome.archive.manifest["members"]
        assert listing.details[outcome.archive.name] == {"files": len(members), "logical_bytes": sum(m["size"] for m in members),
                                                         "new_bytes": outcome.archive.manifest["repository"]["new_bytes"]}


def test_snapshots_written_before_summaries_are_listed_used_as_parent_and_restored(tmp_path, data_dir):
    files = write_tree(data_dir, files=5, size=30_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    old_style = {k: v for k, v in repo.read_snapshot(first.archive.name).items() if k != "summary"}
    old_name = _rewrite(repo, first.archive.name, old_style)
    assert snapshot_summary(repo.read_snapshot_plaintext(old_name)) is None
    listing = list_snapshots(repo, keep_newest=True)
    assert [r.name for r in listing.refs] == [old_name] and listing.newest["backup_id"] == first.archive.backup_id
    assert listing.details[old_name]["files"] == 5
    files[0].write_bytes(os.urandom(30_000))
    second = backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=1), KEY)
    assert second.archive.manifest["repository"]["reused_files"] == 4  # the old-style snapshot was the parent
    assert check_repository(repo, read_data=True) == []
    expected = {p: p.read_bytes() for p in files}
    for p in files:
        p.unlink()
    restore_backup(select_snapshot(repo, first.archive.backup_id).name, KEY, {"trading_data"}, stage_root=tmp_path / "s1",
                   data_dir=data_dir, repository=repo)
    assert files[1].read_bytes() == expected[files[1]] and files[0].read_bytes() != expected[files[0]]
    for p in files:
        p.unlink()
    restore_backup(select_snapshot(repo, "latest").name, KEY, {"trading_data"}, stage_root=tmp_path / "s2",
                   data_dir=data_dir, repository=repo)
    assert {p: p.read_bytes() for p in files} == expected


def test_a_newest_snapshot_that_does_not_hold_up_is_never_the_parent(tmp_path, data_dir):
    write_tree(data_dir, files=3, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    second = backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=1), KEY)
    document = repo.read_snapshot(second.archive.name)
    document["members"][1]["sha256"] = "not-a-checksum"  # sealed with the key, but its members are malformed
    bad = _rewrite(repo, second.archive.name, document, sort_keys=False)
    listing = list_snapshots(repo, keep_newest=True)
    assert listing.newest["backup_id"] == first.archive.backup_id
    assert [r.name for r in listing.refs] == [first.archive.name] and listing.unreadable == [bad]
    assert listing.problems and "sha256" in listing.problems[0]

    document["members"][1]["sha256"] = second.archive.manifest["members"][1]["sha256"]
    document["summary"]["backup_id"] = "20990101T000000Z"  # a summary naming another backup
    forged = _rewrite(repo, bad, document, sort_keys=False)
    listing = list_snapshots(repo, keep_newest=True)
    assert listing.newest["backup_id"] == first.archive.backup_id and listing.unreadable == [forged]
    assert "summary" in listing.problems[0]


def test_unchanged_members_are_written_as_the_parent_stored_them_and_nothing_else_is(tmp_path, data_dir):
    root = tmp_path / "first-place"
    files = write_tree(root, files=6, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    files[2].write_bytes(os.urandom(20_000))
    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    assert second.archive.manifest["repository"]["reused_files"] == 5
    parent_lines = set(split_members(repo.read_snapshot_plaintext(first.archive.name))[1])
    lines = split_members(repo.read_snapshot_plaintext(second.archive.name))[1]
    assert [line in parent_lines for line in lines] == [i != 2 for i in range(6)]
    # moved as a whole (same inodes, times and sizes): the files are unchanged, but each member's source is
    # its new path, so no stored text of the parent may be written for them
    moved = tmp_path / "second-place"
    root.rename(moved)
    third = listed_backup(repo, moved, tmp_path, NOW + timedelta(days=2), KEY)
    assert third.archive.manifest["repository"]["reused_files"] == 6
    stored = repo.read_snapshot(third.archive.name)["members"]
    assert [m["source"] for m in stored] == [str(moved / m["name"].removeprefix("data/")) for m in stored]
    assert check_repository(repo, read_data=True) == []


def test_a_parent_not_laid_out_one_member_per_line_is_reencoded(tmp_path, data_dir):
    root = tmp_path / "tree"
    files = write_tree(root, files=4, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    plaintext = repo.read_snapshot_plaintext(first.archive.name)
    assert len(split_members(plaintext)[1]) == 4
    # the same manifest with a line break inside a member (valid JSON, another layout)
    altered = plaintext.replace(b'"kind":', b'\n"kind":', 1)
    reseal_snapshot(repo, first.archive.name, altered)
    assert split_members(altered) is None and list_snapshots(repo, keep_newest=True).newest.member_texts is None
    files[0].write_bytes(os.urandom(20_000))
    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    assert second.archive.manifest["repository"]["reused_files"] == 3
    assert len(split_members(repo.read_snapshot_plaintext(second.archive.name))[1]) == 4
    assert check_repository(repo, read_data=True) == []
