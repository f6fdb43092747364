"""Repository metadata read and written with fewer copies: a stored file read at its size (not the limit), a
snapshot sealed in place, its members' text decoded straight from the plaintext, indexes and snapshots decoded
by orjson. Each keeps what it replaced: the same bytes, the same refusals, the same clear errors."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone

import pytest

from trading_maintenance.core.backups import repository as repository_module
from trading_maintenance.core.backups.parent_members import split_members
from trading_maintenance.core.backups.repository import Repository, RepositoryError
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.snapshots import list_snapshots, select_snapshot
from trading_maintenance_tests.backups.repository_helpers import backup_tree, write_tree

KEY = "fewer-copies-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_a_stored_file_is_read_whole_at_its_size_and_refused_past_the_limit(tmp_path):
    path = tmp_path / "stored"
    data = os.urandom(300_000)
    path.write_bytes(data)
    assert repository_module._read_bounded(path, 300_000) == data
    assert repository_module._read_bounded(path, 10 << 20) == data
    with pytest.raises(RepositoryError, match="larger than 299999 bytes"):
        repository_module._read_bounded(path, 299_999)
    (tmp_path / "empty").write_bytes(b"")
    assert repository_module._read_bounded(tmp_path / "empty", 100) == b""
    with pytest.raises(RepositoryError, match="missing from the repository"):
        repository_module._read_bounded(tmp_path / "absent", 100)


def test_reading_goes_on_past_a_short_read_and_past_the_size_measured_first(tmp_path):
    """A pipe hands its bytes over in the pieces they were written in: the reader keeps going until the end,
    or until one byte past the limit, whatever it was told to ask for first."""
    pieces = [os.urandom(15_000) for _ in range(3)]  # within a pipe's buffer (64 KiB): written before any read
    read_end, write_end = os.pipe()
    for piece in pieces:
        os.write(write_end, piece[:10_000])
        os.write(write_end, piece[10_000:])
    os.close(write_end)
    with open(read_end, "rb", buffering=0) as handle:
        assert repository_module._read_upto(handle, 1000, 10 << 20) == b"".join(pieces)
    read_end, write_end = os.pipe()
    os.write(write_end, b"x" * 60_000)
    os.close(write_end)
    with open(read_end, "rb", buffering=0) as handle:  # grown past the limit since measured: one byte past it
        assert len(repository_module._read_upto(handle, 10, 40_001)) == 40_001


def test_a_snapshot_sealed_in_place_opens_like_one_sealed_by_copy(tmp_path, data_dir, monkeypatch):
    files = write_tree(data_dir, files=6, size=20_000)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = backup_tree(repo, data_dir, tmp_path, NOW, KEY)
    sealed = (repo.root / "snapshots" / first.archive.name).read_bytes()
    assert hashlib.sha256(sealed).hexdigest() == first.archive.name
    plaintext = repo.read_snapshot_plaintext(first.archive.name)
    assert json.loads(plaintext)["members"] == first.archive.manifest["members"]
    assert len(split_members(plaintext)[1]) == 6
    # the library's other way (no encrypt_into, as in older releases): the same plaintext, sealed by copy
    monkeypatch.setattr(repo.keys, "aead", _WithoutEncryptInto(repo.keys.aead))
    resealed = repo.keys.seal_large(plaintext, b"snapshot")
    assert type(resealed) is bytes and repo.keys.open(resealed, b"snapshot", "x") == plaintext
    monkeypatch.undo()
    in_place = repo.keys.seal_large(plaintext, b"snapshot")
    assert type(in_place) is bytearray and in_place[:12] != resealed[:12]  # a fresh nonce each time
    assert repo.keys.open(bytes(in_place), b"snapshot", "x") == plaintext
    with pytest.raises(RepositoryError, match="failed authentication"):
        repo.keys.open(bytes(in_place), b"index", "snapshot x")
    files[0].write_bytes(os.urandom(20_001))
    second = backup_tree(repo, data_dir, tmp_path, NOW.replace(hour=13), KEY)
    for p in files:
        p.unlink()
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=tmp_path / "stage", data_dir=data_dir,
                   repository=repo)
    assert len(list(data_dir.joinpath("parquet", "market_data").iterdir())) == 6
    assert second.archive.manifest["repository"]["reused_files"] == 5


def test_a_snapshot_of_no_members_is_written_and_listed_as_before(tmp_path, data_dir):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    name = repo.write_snapshot({"backup_id": "20260302T120000Z", "created_at": NOW.isoformat(), "members": []})
    plaintext = repo.read_snapshot_plaintext(name)
    assert plaintext.endswith(b',"members":[\n\n]}')
    assert json.loads(plaintext)["members"] == [] and split_members(plaintext)[1] == []
    listing = list_snapshots(repo, keep_newest=True)
    assert [r.name for r in listing.refs] == [name] and listing.newest.member_texts == []


@pytest.mark.parametrize("document", [b'{"packs": NaN}', b'{"packs": {"%s": [["%s", 0, 1, 99999999999999999999999]]}}',
                                      b'\xff\xfe{"packs": {}}', b'{"packs": {}'])
def test_an_index_json_does_not_accept_is_refused_with_its_name(tmp_path, data_dir, document):
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    if b"%s" in document:
        document = document % (b"a" * 64, b"b" * 64)
    sealed = repo.keys.seal(document, b"index")
    name = hashlib.sha256(sealed).hexdigest()
    (repo.root / "index" / name).write_bytes(sealed)
    with pytest.raises(RepositoryError) as caught:
        repo.load_index()
    assert f"index {name[:16]}" in str(caught.value) and "Traceback" not in str(caught.value)


class _WithoutEncryptInto:
    def __init__(self, aead):
        self._aead = aead

    def encrypt(self, *args):
        return self._aead.encrypt(*args)

    def decrypt(self, *args):
        return self._aead.decrypt(*args)
