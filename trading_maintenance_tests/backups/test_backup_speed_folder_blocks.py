"""A folder listed exactly as the parent snapshot recorded it (names, sizes, kinds, sources, stats: one digest)
is taken over as the parent's lines of it, without a check per file; any folder that differs, whose recorded
range does not name its files, or whose chunks are not all indexed, is matched file by file as before."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from trading_maintenance.core.backups import parent_members
from trading_maintenance.core.backups.parent_members import ParentMembers, folder_digest, split_members
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.run import collect_trading_files, create_backup
from trading_maintenance.core.backups.snapshots import check_repository, list_snapshots
from trading_maintenance_tests.backups.repository_helpers import assert_restores_exactly, listed_backup, reseal_snapshot

KEY = "folder-blocks-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def write_folders(root: Path, folders: int = 4, files: int = 3, size: int = 5_000) -> list[Path]:
    paths = []
    for f in range(folders):
        folder = root / "parquet" / "market_data" / f"S{f:02d}" / "1min"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files):
            path = folder / f"2026-01-{i + 1:02d}.parquet"
            path.write_bytes(os.urandom(size))
            paths.append(path)
    return paths


def snapshot_parts(repo: Repository, name: str) -> tuple[dict, list[str]]:
    return split_members(repo.read_snapshot_plaintext(name))


def count_blocks(monkeypatch) -> list:
    taken: list = []
    original = ParentMembers.reusable_block

    def spy(self, digest, items, known):
        block = original(self, digest, items, known)
        taken.append(block is not None)
        return block

    monkeypatch.setattr(ParentMembers, "reusable_block", spy)
    return taken


def test_unchanged_folders_are_taken_over_whole_and_the_snapshot_is_the_same(tmp_path, data_dir, monkeypatch):
    root = tmp_path / "tree"
    files = write_folders(root)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    head, lines = snapshot_parts(repo, first.archive.name)
    assert len(head["folders"]) == 4
    for first_line, count in head["folders"].values():  # each range names one folder's files, in order
        names = [json.loads(line)["name"] for line in lines[first_line:first_line + count]]
        assert count == 3 and len({n.rsplit("/", 1)[0] for n in names}) == 1 and names == sorted(names)

    before = folder_digest_of(root, 1)
    files[4].write_bytes(os.urandom(5_000))  # one file of folder S01 changes
    taken = count_blocks(monkeypatch)
    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    assert taken.count(True) == 3 and second.files == 12 and second.part_bytes["trading_data"] == 12 * 5_000
    assert second.archive.manifest["repository"]["reused_files"] == 11
    head2, lines2 = snapshot_parts(repo, second.archive.name)
    changed = [i for i, (a, b) in enumerate(zip(lines, lines2)) if a != b]
    assert changed == [4] and len(lines2) == 12 and head2["summary"]["files"] == 12
    assert head2["summary"]["logical_bytes"] == sum(p.stat().st_size for p in files)
    assert head2["folders"] == {d: r for d, r in head["folders"].items() if d != before} | {folder_digest_of(root, 1): [3, 3]}
    assert [m.name for m in second.archive.members] == [json.loads(line)["name"] for line in lines2]

    third = listed_backup(repo, root, tmp_path, NOW + timedelta(days=2), KEY)  # every folder now as recorded
    assert taken.count(True) == 3 + 4 and third.archive.manifest["repository"]["new_bytes"] == 0
    assert check_repository(repo, read_data=True) == []
    assert_restores_exactly(repo, KEY, files, root, tmp_path / "stage")


def folder_digest_of(root: Path, folder: int) -> str:
    planned, _, _ = collect_trading_files(root, ["parquet"], 0, NOW)
    items = [(p.member, p.path, "trading_data", p.path, p.stat) for p in planned if f"/S{folder:02d}/" in p.member]
    return folder_digest(items)


def test_a_recorded_range_that_does_not_name_the_folder_is_not_taken_over(tmp_path, data_dir, monkeypatch):
    root = tmp_path / "tree"
    files = write_folders(root)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    plaintext = repo.read_snapshot_plaintext(first.archive.name)
    head, lines = split_members(plaintext)
    shifted = {digest: [(first_line + 1) % 12, count] for digest, (first_line, count) in head["folders"].items()}
    head_line = plaintext[:plaintext.index(b"\n")]
    old = json.dumps(head["folders"], separators=(",", ":")).encode()
    assert old in head_line
    reseal_snapshot(repo, first.archive.name, head_line.replace(old, json.dumps(shifted, separators=(",", ":")).encode())
                    + b"\n" + ",\n".join(lines).encode() + b"\n]}")
    taken = count_blocks(monkeypatch)
    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    assert taken == [False] * 4  # each file matched alone instead, and every one still taken from the parent
    assert second.archive.manifest["repository"]["reused_files"] == 12
    assert snapshot_parts(repo, second.archive.name)[1] == lines
    assert_restores_exactly(repo, KEY, files, root, tmp_path / "stage")


def test_a_block_with_an_unindexed_chunk_or_a_malformed_checksum_is_refused(tmp_path, data_dir):
    root = tmp_path / "tree"
    write_folders(root, folders=1)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = listed_backup(repo, root, tmp_path, NOW, KEY)
    head, lines = snapshot_parts(repo, first.archive.name)
    planned, _, _ = collect_trading_files(root, ["parquet"], 0, NOW)
    items = [(p.member, p.path, "trading_data", p.path, p.stat) for p in planned]
    digest = folder_digest(items)
    known = repo.load_index()[0]
    assert ParentMembers(lines, None, head["folders"]).reusable_block(digest, items, known) == lines
    missing = json.loads(lines[1])["chunks"][0]
    assert ParentMembers(lines, None, head["folders"]).reusable_block(digest, items, {k: v for k, v in known.items() if k != missing}) is None
    sha = json.loads(lines[2])["sha256"]
    bad = [*lines[:2], lines[2].replace(sha, sha.upper())]
    assert ParentMembers(bad, None, head["folders"]).reusable_block(digest, items, known) is None
    assert ParentMembers(lines, None, head["folders"]).reusable_block(digest, items[:2], known) is None  # not its count
    assert ParentMembers(lines, None, {digest: [1, 3]}).reusable_block(digest, items, known) is None  # past the end
    assert ParentMembers(lines, None, {digest: ["0", 3]}).reusable_block(digest, items, known) is None


def test_the_digest_covers_every_field_a_line_holds_but_the_checksum_and_chunks():
    item = ("data/parquet/a/1.parquet", "/d/parquet/a/1.parquet", "trading_data", "/d/parquet/a/1.parquet", (10, 20, 30))
    base = folder_digest([item])
    for changed in [(item[0] + "x", *item[1:]), (*item[:2], "config", *item[3:]), (*item[:3], "/e", item[4]),
                    (*item[:4], (11, 20, 30)), (*item[:4], (10, 21, 30)), (*item[:4], (10, 20, 31))]:
        assert folder_digest([changed]) != base
    assert folder_digest([item, item]) != base
    assert parent_members.FOLDER_DIGEST_FORMAT in b"folder-lines-v1\0"


def test_a_file_changed_between_listing_and_reading_leaves_its_folder_unrecorded(tmp_path, data_dir):
    root = tmp_path / "tree"
    files = write_folders(root, folders=2)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    planned, _, _ = collect_trading_files(root, ["parquet"], 0, NOW)
    files[0].write_bytes(os.urandom(6_000))  # after the listing, before the backup reads it
    outcome = create_backup(dest_dir=root / "out", fmt="tar.zst", secret=KEY, parts=["trading_data"], config_path=None,
                            effective_settings={}, secret_keys=set(), data_dir=root, trading_files=planned, now=NOW,
                            work_root=tmp_path, repository=repo)
    head, lines = snapshot_parts(repo, outcome.archive.name)
    assert list(head["folders"]) == [folder_digest_of(root, 1)]  # S00 recorded as read, not as listed
    assert json.loads(lines[0])["size"] == 6_000
    second = listed_backup(repo, root, tmp_path, NOW + timedelta(days=1), KEY)
    assert second.archive.manifest["repository"]["reused_files"] == 6
    assert sorted(list_snapshots(repo, keep_newest=True).newest["folders"]) == sorted([folder_digest_of(root, 0), folder_digest_of(root, 1)])
    assert_restores_exactly(repo, KEY, files, root, tmp_path / "stage")
