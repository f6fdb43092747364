"""decode_chunk (check --read-data, export, drill) refuses a zstd frame announcing more bytes than the index
declares before decompressing it: zstandard ignores max_output_size when the frame states its size."""

from __future__ import annotations

import pytest
import zstandard

from trading_maintenance.core.backups import repository
from trading_maintenance.core.backups.repository import Keys, RepositoryError, decode_chunk

SALT = b"s" * 16


@pytest.mark.parametrize("secret", ["bounded-chunk-key", None])
def test_a_frame_announcing_more_than_the_index_declares_is_refused_before_decompressing(monkeypatch, secret):
    keys = Keys(secret, SALT, chunk_id_algorithm="hmac-sha256")
    data = b"a" * 100_000
    chunk_id = keys.chunk_id(data)
    stored = keys.seal(b"\x01" + zstandard.ZstdCompressor(level=3).compress(data), chunk_id.encode())
    assert decode_chunk(keys, chunk_id, stored, len(data)) == data
    sizes = []
    real = zstandard.ZstdDecompressor

    class Watching:
        def decompress(self, body, max_output_size=0):
            sizes.append(max_output_size)
            return real().decompress(body, max_output_size=max_output_size)

    monkeypatch.setattr(repository.zstandard, "ZstdDecompressor", Watching)
    with pytest.raises(RepositoryError, match="announces more bytes"):
        decode_chunk(keys, chunk_id, stored, 1000)  # an index entry declaring 1,000 bytes
    assert sizes == []  # refused before any decompression


def test_a_frame_of_unstated_size_is_bounded_and_junk_is_refused():
    keys = Keys("bounded-chunk-key", SALT, chunk_id_algorithm="hmac-sha256")
    data = b"b" * 50_000
    chunk_id = keys.chunk_id(data)
    streamed = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = streamed.compress(data) + streamed.flush()
    assert zstandard.frame_content_size(frame) == -1
    stored = keys.seal(b"\x01" + frame, chunk_id.encode())
    assert decode_chunk(keys, chunk_id, stored, len(data)) == data
    with pytest.raises(RepositoryError):
        decode_chunk(keys, chunk_id, stored, 1000)
    junk = keys.seal(b"\x01" + b"not a zstd frame at all", chunk_id.encode())
    with pytest.raises(RepositoryError, match="does not decompress"):
        decode_chunk(keys, chunk_id, junk, len(data))
