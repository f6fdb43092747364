"""Chunk ids derived from the chunk's SHA-256 (a file of one chunk hashed once), and `check --read-data`
recomputing every chunk's id under the repository's own format, the first format's BLAKE2b included."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from trading_maintenance.core.backups.repository import CHUNK_MAX, CHUNK_MIN, Repository
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.run import BackupOutcome, collect_trading_files, create_backup
from trading_maintenance.core.backups.snapshots import check_repository, select_snapshot
from trading_maintenance_tests.backups.repository_helpers import write_tree

KEY = "chunk-id-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def backup_tree(repo: Repository, data_dir, tmp_path, now: datetime, key: str | None) -> BackupOutcome:
    """As production plans it: the listing's stat goes with each file, so files of one chunk take the pool's path."""
    planned, _, _ = collect_trading_files(data_dir, ["parquet"], 0, now)
    assert planned and all(p.stat for p in planned)
    return create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=key, parts=["trading_data"], config_path=None,
                         effective_settings={}, secret_keys=set(), data_dir=data_dir, trading_files=planned, now=now,
                         work_root=tmp_path, repository=repo)


def _set_chunk_id_format(repo: Repository, algorithm: str | None) -> Repository:
    """The repository reopened as if its config named `algorithm` (None: the first format, no field)."""
    path = repo.root / "config.json"
    config = json.loads(path.read_text())
    config.pop("chunk_id", None)
    if algorithm is not None:
        config["chunk_id"] = algorithm
    path.write_text(json.dumps(config))
    return Repository.open_or_create(repo.root.parent, KEY)


def test_chunk_ids_are_the_hmac_of_the_chunks_sha256_and_check_recomputes_them(tmp_path, data_dir):
    small = write_tree(data_dir, files=6, size=50_000)
    large = data_dir / "parquet" / "market_data" / "large.bin"
    large.write_bytes(os.urandom(CHUNK_MAX + CHUNK_MIN))  # past the largest chunk: always cut
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    outcome = backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    members = {m["name"]: m for m in outcome.archive.manifest["members"]}
    index, _ = repo.load_index()
    for path in small:
        member = members[f"data/{path.relative_to(data_dir).as_posix()}"]
        # one chunk: the file's checksum is the chunk's SHA-256, and the id its HMAC
        assert member["chunks"] == [hmac.new(repo.keys.id_key, bytes.fromhex(member["sha256"]), "sha256").hexdigest()]
        assert member["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    chunks = members[f"data/{large.relative_to(data_dir).as_posix()}"]["chunks"]
    assert len(chunks) > 1
    for chunk_id in chunks:
        data = repo.read_chunk(chunk_id, index[chunk_id])
        assert chunk_id == hmac.new(repo.keys.id_key, hashlib.sha256(data).digest(), "sha256").hexdigest()
    assert check_repository(repo, read_data=True) == []
    # read as the first format, every chunk's recomputed id differs from its stored one: check finds each
    problems = check_repository(_set_chunk_id_format(repo, None), read_data=True)
    assert len([p for p in problems if "does not match its id" in p]) == len(index)


def test_a_first_format_repository_keeps_blake2b_ids_is_backed_up_into_and_checked(tmp_path, data_dir):
    files = write_tree(data_dir, files=5, size=40_000)
    repo = _set_chunk_id_format(Repository.open_or_create(data_dir / "backups", KEY), None)
    first = backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    files[1].write_bytes(os.urandom(60_000))
    second = backup_tree(repo, data_dir, tmp_path, NOW + timedelta(days=1), KEY)
    assert second.archive.manifest["repository"]["reused_files"] == 4
    assert "chunk_id" not in json.loads((repo.root / "config.json").read_text())
    for member in second.archive.manifest["members"]:
        data = (data_dir / member["name"].removeprefix("data/")).read_bytes()
        assert member["chunks"] == [hashlib.blake2b(data, key=repo.keys.id_key, digest_size=32).hexdigest()]
    assert first.archive.manifest["members"][0]["chunks"] == second.archive.manifest["members"][0]["chunks"]
    assert check_repository(repo, read_data=True) == []
    problems = check_repository(_set_chunk_id_format(repo, "hmac-sha256"), read_data=True)
    assert problems and all("does not match its id" in p for p in problems)
    repo = _set_chunk_id_format(repo, None)
    expected = {p: p.read_bytes() for p in files}
    for p in files:
        p.unlink()
    restore_backup(select_snapshot(repo, "latest").name, KEY, {"trading_data"}, stage_root=tmp_path / "stage",
                   data_dir=data_dir, repository=repo)
    assert {p: p.read_bytes() for p in files} == expected


@pytest.mark.parametrize("secret", [KEY, None])
def test_an_unencrypted_repository_ids_chunks_the_same_way(tmp_path, data_dir, secret):
    write_tree(data_dir, files=2, size=30_000)
    repo = Repository.open_or_create(data_dir / "backups", secret)
    outcome = backup_tree(repo, data_dir, tmp_path, NOW, secret)
    for member in outcome.archive.manifest["members"]:
        assert member["chunks"] == [hmac.new(repo.keys.id_key, bytes.fromhex(member["sha256"]), "sha256").hexdigest()]
    assert check_repository(repo, read_data=True) == []
