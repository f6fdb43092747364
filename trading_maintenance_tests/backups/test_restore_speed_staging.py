"""The restore's own staging of a snapshot (snapshot_restore): files of one chunk in batches read with one
pread each, chunks authenticated and bounded, every file checked against its SHA-256, exact bytes back."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
import zstandard

from trading_maintenance.core.backups import snapshot_restore
from trading_maintenance.core.backups.repository import CHUNK_MAX, Repository, RepositoryError
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.snapshot_restore import open_chunk, stage_snapshot_for_restore
from trading_maintenance.core.backups.snapshots import select_snapshot
from trading_maintenance_tests.backups.repository_helpers import backup_tree

KEY = "restore-speed-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _write(data_dir, sizes, prefix):
    root = data_dir / "parquet" / "market_data" / prefix
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = root / f"{i:03d}.bin"
        path.write_bytes(b"same bytes" * (size // 10) if i % 5 == 4 else os.urandom(size))  # duplicates too
        paths.append(path)
    return paths


@pytest.mark.parametrize("secret", [KEY, None], ids=["encrypted", "plain"])
def test_batches_across_packs_empty_and_many_chunk_files_restore_exactly(tmp_path, data_dir, monkeypatch, secret):
    """Two backups (so the snapshot's chunks lie in the packs of both), small batches and a small window
    (so runs break on their file count, size and pack), files of 0 bytes, one chunk and several chunks."""
    monkeypatch.setattr(snapshot_restore, "BATCH_FILES", 3)
    monkeypatch.setattr(snapshot_restore, "BATCH_BYTES", 200_000)
    monkeypatch.setattr(snapshot_restore, "STAGE_WINDOW", 2)
    repo = Repository.open_or_create(data_dir / "backups", secret)
    first = _write(data_dir, [0, 1, 4096, 70_000, 150_000, 30_000, CHUNK_MAX + 1_000_000, 0, 90_000, 10], "a")
    backup_tree(repo, data_dir, tmp_path, NOW, secret)
    second = _write(data_dir, [5_000, 120_000, 0, 60_000, 2 * CHUNK_MAX, 40_000, 1, 80_000], "b")
    outcome = backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=1), secret)
    chunked = [m for m in outcome.archive.manifest["members"] if len(m["chunks"]) > 1]
    assert len(chunked) == 2
    expected = {p: p.read_bytes() for p in first + second}
    target = tmp_path / "restored"
    restore_backup(select_snapshot(repo).name, secret, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                   repository=repo, data_folders=("parquet",))
    assert {p: (target / p.relative_to(data_dir)).read_bytes() for p in expected} == expected


def test_a_run_of_small_files_in_one_pack_is_read_with_one_pread(tmp_path, data_dir, monkeypatch):
    files = _write(data_dir, [20_000] * 20, "a")
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: reads.append(n) or real_pread(fd, n, offset))
    verified = stage_snapshot_for_restore(repo, select_snapshot(repo).name, tmp_path / "stage")
    monkeypatch.undo()
    assert len(reads) == 1
    assert len(verified.staged) == len(verified.identities) == 20
    for path in files:
        staged = verified.staged[f"data/{path.relative_to(data_dir).as_posix()}"]
        assert staged.read_bytes() == path.read_bytes()
        assert verified.identities[f"data/{path.relative_to(data_dir).as_posix()}"][1] == os.stat(staged).st_ino


def test_unencrypted_chunk_altered_is_caught_by_the_file_checksum_and_nothing_is_restored(tmp_path, data_dir):
    """No GCM without a key: the file's SHA-256 is what finds a changed byte (chunk ids are not recomputed)."""
    files = _write(data_dir, [30_000, 30_000, 30_000], "a")
    repo = Repository.open_or_create(data_dir / "backups", None)
    backup_tree(repo, data_dir, tmp_path, NOW, None)
    pack = repo.pack_path(next(iter(repo.pack_ids())))
    raw = bytearray(pack.read_bytes())
    raw[40_000] ^= 0x01  # inside the second file's chunk (random bytes: stored uncompressed)
    pack.write_bytes(bytes(raw))
    target = tmp_path / "restored"
    with pytest.raises(RepositoryError, match="does not match its checksum"):
        restore_backup(select_snapshot(repo).name, None, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                       repository=repo, data_folders=("parquet",))
    assert not target.exists() or not [p for p in target.rglob("*") if p.is_file()]
    assert all(p.exists() for p in files)
    assert not [p for p in (tmp_path / "stage").rglob("*") if p.is_file()]  # the staging folder is removed too


def test_chunk_whose_frame_announces_more_than_its_declared_size_is_refused_before_decompressing(data_dir):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    chunk_id = "ab" * 32
    decompressor = zstandard.ZstdDecompressor()
    big = zstandard.ZstdCompressor().compress(b"\0" * 1_000_000)  # announces 1 MB in its header
    with pytest.raises(RepositoryError, match="announces 1000000 bytes"):
        open_chunk(repo.keys, chunk_id, repo.keys.seal(b"\x01" + big, chunk_id.encode()), 1000, decompressor)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 1_000_000)
    with pytest.raises(RepositoryError, match="does not decompress"):  # bounded while decompressing
        open_chunk(repo.keys, chunk_id, repo.keys.seal(b"\x01" + unsized, chunk_id.encode()), 1000, decompressor)
    empty = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 50)
    with pytest.raises(RepositoryError, match="does not decompress"):  # 0 declared bytes is no licence to grow
        open_chunk(repo.keys, chunk_id, repo.keys.seal(b"\x01" + empty, chunk_id.encode()), 0, decompressor)
    with pytest.raises(RepositoryError, match="failed authentication"):  # sealed under another id
        open_chunk(repo.keys, "cd" * 32, repo.keys.seal(b"\x00abc", chunk_id.encode()), 3, decompressor)
    assert open_chunk(repo.keys, chunk_id, repo.keys.seal(b"\x00abc", chunk_id.encode()), 3, decompressor) == b"abc"
    with pytest.raises(RepositoryError, match="is 3 bytes, not the 4"):
        open_chunk(repo.keys, chunk_id, repo.keys.seal(b"\x00abc", chunk_id.encode()), 4, decompressor)


def test_index_declaring_a_stored_size_beyond_its_chunk_is_refused_before_reading(tmp_path, data_dir, monkeypatch):
    """A read allocates the size the index declares: more than plaintext + encoding byte + nonce + tag is refused."""
    from trading_maintenance.core.backups.repository import BlobRef

    _write(data_dir, [30_000, 30_000], "a")
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    old = repo.index_files()
    packs = {pack: [(e[0], BlobRef(pack, e[1], e[2], e[3])) for e in entries]
             for name in old for pack, entries in repo.read_index_file(name).items()}
    pack, entries = next(iter(packs.items()))
    chunk_id, ref = entries[0]
    entries[0] = (chunk_id, BlobRef(pack, ref.offset, ref.raw_length + snapshot_restore.STORED_OVERHEAD + 1, ref.raw_length))
    repo.write_index(packs)
    for name in old:
        repo.remove_file("index", name)
    reads = []
    monkeypatch.setattr(os, "pread", lambda *args: reads.append(args) or pytest.fail("read despite the bad index"))
    target = tmp_path / "restored"
    with pytest.raises(RepositoryError, match="stored bytes for chunk"):
        restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=target,
                       repository=repo, data_folders=("parquet",))
    assert not reads and not target.exists()


def test_files_staged_in_pack_order_are_listed_in_the_snapshots_order(tmp_path, data_dir):
    """Files 4 and 9 share one chunk (stored with file 4): pack order stages 4 then 9 then 5, the result
    still lists the files in the snapshot's order."""
    _write(data_dir, [20_000] * 10, "a")
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    outcome = backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    members = outcome.archive.manifest["members"]
    assert members[4]["chunks"] == members[9]["chunks"]
    verified = stage_snapshot_for_restore(repo, select_snapshot(repo).name, tmp_path / "stage")
    assert list(verified.staged) == [m["name"] for m in members]
    assert verified.staged[members[9]["name"]].read_bytes() == (data_dir / members[9]["name"][len("data/"):]).read_bytes()


def test_unencrypted_chunk_of_a_many_chunk_file_altered_is_caught_when_the_file_completes(tmp_path, data_dir):
    paths = _write(data_dir, [CHUNK_MAX + 2_000_000], "a")
    repo = Repository.open_or_create(data_dir / "backups", None)
    outcome = backup_tree(repo, data_dir, tmp_path, NOW, None)
    assert len(outcome.archive.manifest["members"][0]["chunks"]) > 1
    pack = repo.pack_path(next(iter(repo.pack_ids())))
    raw = bytearray(pack.read_bytes())
    raw[CHUNK_MAX + 1_000_000] ^= 0x01  # inside a later chunk (random bytes: stored uncompressed)
    pack.write_bytes(bytes(raw))
    with pytest.raises(RepositoryError, match="does not match its checksum"):
        stage_snapshot_for_restore(repo, select_snapshot(repo).name, tmp_path / "stage")
    assert paths[0].exists()
