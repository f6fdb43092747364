"""A backup's parent is matched by its members' lines, not decoded whole: a line is taken over as text only
when it is exactly what the unchanged file would be recorded as; any other line (tampered stat, checksum or
chunk, another layout) is decoded alone and trusted no more than the decoded path trusts it."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

from trading_maintenance.core.backups.parent_members import ParentMembers, split_members
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.snapshots import check_repository, list_snapshots
from trading_maintenance_tests.backups.repository_helpers import assert_restores_exactly, listed_backup, reseal_snapshot, write_tree

KEY = "parent-lines-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_only_lines_exactly_as_they_would_be_recorded_are_taken_over(tmp_path, data_dir):
    root = tmp_path / "tree"
    files = write_tree(root, files=6, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    plaintext = repo.read_snapshot_plaintext(first.archive.name)
    head, lines = split_members(plaintext)
    assert len(lines) == 6 and [json.loads(line) for line in lines] == first.archive.manifest["members"]
    entries = [json.loads(line) for line in lines]
    original = list(lines)
    mtime = str(entries[0]["stat"][1])
    lines[0] = lines[0].replace(f",{mtime},", f",{int(mtime) + 1},")  # a stat the file does not have
    lines[1] = lines[1].replace(entries[1]["sha256"], "zz" * 32)  # not a checksum
    lines[2] = lines[2].replace(entries[2]["chunks"][0], "ab" * 32)  # a chunk no index lists
    lines[3] = lines[3].replace(',"source":', ',"extra":1,"source":')  # another layout, otherwise sound
    lines[4] = lines[4].replace('"size":20000', '"size":20001', 1)  # a size its stat contradicts
    head_line = plaintext[:plaintext.index(b"\n")]
    tampered = reseal_snapshot(repo, first.archive.name, head_line + b"\n" + ",\n".join(lines).encode() + b"\n]}")
    assert list_snapshots(repo, keep_newest=True).newest.member_texts == lines

    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    # f03 and f04 are decoded and checked (taken with the size their stat says, the extra key dropped, encoded
    # again), f05 taken over as text; f00-f02 are read again
    assert second.archive.manifest["repository"]["reused_files"] == 3
    assert second.archive.manifest["repository"]["new_bytes"] == 0  # their chunks were stored already
    new_lines = list_snapshots(repo, keep_newest=True).newest.member_texts
    assert new_lines == original and [json.loads(line) for line in new_lines] == entries
    assert [m["sha256"] for m in second.archive.manifest["members"]] == [e["sha256"] for e in entries]
    assert [m["chunks"] for m in second.archive.manifest["members"]] == [e["chunks"] for e in entries]
    (repo.root / "snapshots" / tampered).unlink()
    assert check_repository(repo, read_data=True) == []
    assert_restores_exactly(repo, KEY, files, root, tmp_path / "stage")


def test_a_file_rewritten_with_the_same_size_and_a_new_mtime_is_read_again(tmp_path, data_dir):
    root = tmp_path / "tree"
    files = write_tree(root, files=3, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    listed_backup(repo, root, tmp_path, NOW, KEY)
    st = files[1].stat()
    files[1].write_bytes(os.urandom(20_000))
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert files[1].stat().st_ino == st.st_ino and files[1].stat().st_size == st.st_size
    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    assert second.archive.manifest["repository"]["reused_files"] == 2
    member = next(m for m in second.archive.manifest["members"] if m["name"].endswith("f01.bin"))
    assert member["sha256"] == hashlib.sha256(files[1].read_bytes()).hexdigest()


def test_a_layout_that_is_not_one_member_per_line_is_decoded_whole(tmp_path, data_dir):
    root = tmp_path / "tree"
    write_tree(root, files=3, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    plaintext = repo.read_snapshot_plaintext(first.archive.name)
    assert split_members(plaintext) is not None
    assert split_members(plaintext.replace(b'"kind":', b'\n"kind":', 1)) is None  # a break inside a member
    assert split_members(plaintext.replace(b'"files":3', b'"files":4', 1)) is None  # not the summary's count
    assert split_members(plaintext.replace(b"\n]}", b"]}")) is None
    assert split_members(json.dumps(json.loads(plaintext)).encode()) is None
    ParentMembers(None, json.loads(plaintext)["members"])  # the decoded form serves the same lookups
    assert ParentMembers(None, json.loads(plaintext)["members"]).entry(first.archive.manifest["members"][0]["name"])


def test_entries_of_a_parent_given_as_lines_are_checked_when_decoded():
    good = {"name": "data/a", "size": 1, "sha256": "ab" * 32, "kind": "trading_data", "chunks": [], "stat": [1, 2, 3]}
    lines = [json.dumps(good, separators=(",", ":")),
             json.dumps({**good, "name": "data/b", "sha256": "x"}, separators=(",", ":")),
             '{"name":"data/c",']
    members = ParentMembers(lines)
    assert members.entry("data/a") == good
    assert members.entry("data/b") is None and members.entry("data/c") is None and members.entry("data/d") is None
