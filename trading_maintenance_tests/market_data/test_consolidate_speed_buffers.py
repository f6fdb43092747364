"""Daily files and read-back archives read whole once and decoded from memory (read_whole,
scan_buffers): the same rows, counts, sizes, mtimes and hashes as reading them by path."""

from __future__ import annotations

import json
import os
import struct
from datetime import date

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trading_maintenance.core.market_data import io as md_io
from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.io import (
    ChangedWhileReading,
    FooterError,
    bytes_sha256,
    file_sha256,
    file_stat,
    parquet_row_count,
    read_whole,
    scan_buffers,
    scan_runs,
)
from trading_maintenance.core.market_data.layout import archive_dir_for, archive_path, manifest_path
from trading_maintenance_tests.market_data.synth import collector_file, session_bars, write_daily

DAYS = [date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5)]


def test_read_whole_gives_the_files_bytes_stat_and_hash(mdir):
    path = write_daily(mdir, session_bars("AAA", DAYS[0]), "AAA", "1min", DAYS[0])
    data, stat = read_whole(path)
    assert data == path.read_bytes()
    assert stat == file_stat(path)
    assert bytes_sha256(data) == file_sha256(path)


def test_read_whole_refuses_a_file_that_changes_while_read(mdir, monkeypatch):
    path = write_daily(mdir, session_bars("AAA", DAYS[0]), "AAA", "1min", DAYS[0])
    real_fstat = os.fstat
    calls = []

    def fstat_then_append(fd):
        result = real_fstat(fd)
        if not calls:  # the writer appends right after the reader took the size
            with open(path, "ab") as handle:
                handle.write(b"late bytes")
        calls.append(fd)
        return result

    monkeypatch.setattr(md_io.os, "fstat", fstat_then_append)
    with pytest.raises(ChangedWhileReading):
        read_whole(path)


def test_read_whole_refuses_what_it_must_not_hold(mdir, monkeypatch):
    path = write_daily(mdir, session_bars("AAA", DAYS[0]), "AAA", "1min", DAYS[0])
    monkeypatch.setattr(md_io, "MAX_BUFFERED_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(ValueError, match="too large"):
        read_whole(path)
    with pytest.raises(OSError):
        read_whole(mdir)  # a folder


def test_scan_buffers_equals_the_scan_of_paths(mdir):
    bars = session_bars("AAA", DAYS[0])
    paths = [
        write_daily(mdir, collector_file(bars, dup_fraction=0.05, shuffle=True, seed=1), "AAA", "1min", DAYS[0]),
        write_daily(mdir, bars.head(0), "AAA", "1min", DAYS[1]),  # an empty file: a run of 0 rows
        mdir / "AAA" / "1min" / f"{DAYS[2].isoformat()}.parquet",
    ]
    session_bars("AAA", DAYS[2]).write_parquet(paths[2], row_group_size=50)  # several row groups
    by_path, path_lengths = scan_runs([str(p) for p in paths])
    buffered, lengths = scan_buffers([read_whole(p)[0] for p in paths])
    assert lengths == path_lengths == [pl.read_parquet(p).height for p in paths]
    assert lengths[1] == 0 and lengths[0] > 0 and lengths[2] > 0
    assert buffered.equals(by_path)
    assert buffered.equals(pl.concat([pl.read_parquet(p) for p in paths]))


def test_scan_buffers_takes_only_the_current_schema(mdir):
    bars = session_bars("AAA", DAYS[0])
    current = read_whole(write_daily(mdir, bars, "AAA", "1min", DAYS[0]))[0]
    old = mdir / "old.parquet"
    bars.drop("asset_type").write_parquet(old)  # an earlier schema: for the careful path to normalise
    for buffers in ([read_whole(old)[0]], [current, read_whole(old)[0]]):
        try:
            assert scan_buffers(buffers) is None
        except pl.exceptions.PolarsError:
            pass  # refused either way: the batch falls back to the careful path
    assert scan_buffers([]) is None


def test_the_batch_path_records_each_sources_own_size_mtime_and_hash(mdir):
    for symbol in ("AAA", "BBB", "CCC"):
        for day in DAYS:
            write_daily(mdir, collector_file(session_bars(symbol, day), dup_fraction=0.02, shuffle=True, seed=day.day), symbol, "1min", day)
    result = consolidate_month(mdir, "2024-03", max_workers=1)
    assert not result.failed and result.total("files_read") == 9
    for symbol in ("AAA", "BBB", "CCC"):
        target = archive_path(archive_dir_for(mdir), symbol, "1min", "2024-03")
        manifest = json.loads(manifest_path(target).read_text())
        sources = {s["name"]: s for s in manifest["sources"]}
        assert len(sources) == 3
        expected = pl.concat([pl.read_parquet(mdir / symbol / "1min" / f"{d.isoformat()}.parquet") for d in DAYS])
        expected = expected.unique(subset=["symbol", "timeframe", "timestamp"], keep="last").sort("timestamp")
        assert pl.read_parquet(target).equals(expected)
        for day in DAYS:
            path = mdir / symbol / "1min" / f"{day.isoformat()}.parquet"
            entry = sources[path.name]
            assert (entry["size"], entry["mtime_ns"]) == file_stat(path)
            assert entry["sha256"] == file_sha256(path)
            assert entry["rows"] == pl.read_parquet(path).height


def _parquet_bytes(df: pl.DataFrame, **kwargs) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(df.to_arrow(), sink, **kwargs)
    return sink.getvalue().to_pybytes()


def test_row_counts_from_the_footer_are_the_rows_each_file_holds(mdir):
    bars = collector_file(session_bars("AAA", DAYS[0]), dup_fraction=0.05, shuffle=True, seed=3)
    samples = []
    for n, kwargs in enumerate(({}, {"row_group_size": 37}, {"compression": "zstd", "compression_level": 1})):
        path = mdir / f"p{n}.parquet"
        bars.write_parquet(path, **kwargs)
        samples.append(path.read_bytes())
    samples += [_parquet_bytes(bars.head(0)), _parquet_bytes(bars, row_group_size=100, use_dictionary=False)]
    for data in samples:
        assert parquet_row_count(data) == pl.read_parquet(data).height
    assert parquet_row_count(samples[1]) == bars.height  # several row groups: the file's total


def _zigzag_varint(value: int) -> bytes:
    value, out = value << 1, bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _file_count_lying_by(data: bytes, delta: int) -> bytes:
    """The file with its FileMetaData.num_rows (the footer's first i64 field 3) off by delta, its row
    groups left as they are."""
    rows = pq.read_metadata(pa.BufferReader(data)).num_rows
    old, new = _zigzag_varint(rows), _zigzag_varint(rows + delta)
    assert len(old) == len(new)
    footer_start = len(data) - 8 - struct.unpack_from("<I", data, len(data) - 8)[0]
    at = data.index(b"\x16" + old, footer_start) + 1  # field 3 (delta 1 after the schema's field 2), type i64
    lying = data[:at] + new + data[at + len(old):]
    assert pq.read_metadata(pa.BufferReader(lying)).num_rows == rows + delta
    return lying


def test_files_whose_counts_lie_in_opposite_directions_are_refused(mdir):
    """Two footers claiming one row more and one row less add up to the rows decoded: without the
    row groups' check each row would be credited to the wrong file (the wrong day and group)."""
    first = _parquet_bytes(session_bars("AAA", DAYS[0]))
    second = _parquet_bytes(session_bars("AAA", DAYS[1]))
    lying = [_file_count_lying_by(first, 1), _file_count_lying_by(second, -1)]
    assert pl.scan_parquet(lying).collect().height == 2 * pl.read_parquet(first).height  # the decoder follows the row groups
    with pytest.raises(FooterError):
        parquet_row_count(lying[0])
    with pytest.raises(FooterError):
        scan_buffers(lying)
    assert scan_buffers([first, second])[1] == [pl.read_parquet(first).height, pl.read_parquet(second).height]


@pytest.mark.parametrize("data", [b"PAR1 not a footer", b"PAR1" + b"\x00" * 20 + b"PAR1"])
def test_a_footer_that_cannot_be_read_is_refused(data):
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error: the batch then takes the careful path
        parquet_row_count(data)


def test_a_footer_length_that_does_not_fit_the_file_is_refused_before_it_is_parsed():
    data = _parquet_bytes(session_bars("AAA", DAYS[0]))
    rows = pl.read_parquet(data).height
    assert parquet_row_count(data) == rows
    for length in (0, len(data) - 11, 2**32 - 1):
        bad = data[:-8] + struct.pack("<I", length) + b"PAR1"
        with pytest.raises(FooterError, match="footer length"):
            parquet_row_count(bad)
    with pytest.raises(FooterError, match="PAR1"):
        parquet_row_count(b"PAR2" + data[4:])


def test_footer_counts_are_pyarrows_with_or_without_the_direct_parser(mdir, monkeypatch):
    bars = collector_file(session_bars("AAA", DAYS[0]), dup_fraction=0.05, shuffle=True, seed=4)
    samples = [_parquet_bytes(bars), _parquet_bytes(bars, row_group_size=50), _parquet_bytes(bars.head(0))]
    direct = [parquet_row_count(data) for data in samples]
    monkeypatch.setattr(md_io, "_parse_file_metadata", None)  # a pyarrow without it: pq.read_metadata
    assert direct == [parquet_row_count(data) for data in samples] == [pq.read_metadata(pa.BufferReader(d)).num_rows for d in samples]
    assert direct[0] == bars.height
