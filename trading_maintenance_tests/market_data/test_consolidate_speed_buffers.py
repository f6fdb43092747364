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
    _footer_num_rows,
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


def test_row_counts_from_the_footer_equal_pyarrows(mdir):
    bars = collector_file(session_bars("AAA", DAYS[0]), dup_fraction=0.05, shuffle=True, seed=3)
    written_by_polars = []
    for n, kwargs in enumerate(({}, {"row_group_size": 37}, {"statistics": False}, {"compression": "zstd", "compression_level": 1})):
        path = mdir / f"p{n}.parquet"
        bars.write_parquet(path, **kwargs)
        written_by_polars.append(path.read_bytes())
    samples = [
        *written_by_polars,
        _parquet_bytes(bars.head(0)),
        _parquet_bytes(bars, row_group_size=100, use_dictionary=False, write_statistics=False),
        _parquet_bytes(bars, compression="snappy", data_page_version="2.0", store_schema=False),
    ]
    table = bars.to_arrow().replace_schema_metadata({"note": "x" * 5000})  # key-value metadata after num_rows
    samples.append(_parquet_bytes(pl.from_arrow(table)))
    for data in samples:
        expected = pq.read_metadata(pa.BufferReader(data)).num_rows
        assert _footer_num_rows(data) == expected
        assert parquet_row_count(data) == expected
    assert _footer_num_rows(samples[1]) == bars.height  # several row groups: the file's total


def _with_footer(footer: bytes) -> bytes:
    return b"PAR1" + footer + struct.pack("<I", len(footer)) + b"PAR1"


@pytest.mark.parametrize(
    "data",
    [
        b"PAR1 not a footer",
        _with_footer(b"\x19\xfc" + b"\xff" * 9 + b"\x01"),  # a list claiming ~2^64 structs, with 0 bytes for them
        _with_footer(b"\x1c" * 5000),  # structs nested 5,000 deep
        _with_footer(b"\x15\x02\x19\x0c\x00\x16"),  # num_rows cut off
        _with_footer(b"\x15\x02\x00"),  # no num_rows
        _with_footer(b"\x15\x02\x16\x01\x00"),  # negative num_rows
        _with_footer(b"\x18\xff\xff\xff\xff\x0f"),  # a string longer than the footer
    ],
)
def test_a_footer_it_does_not_understand_is_refused_in_bounded_time(data):
    with pytest.raises(FooterError):
        _footer_num_rows(data)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error: the batch then takes the careful path
        parquet_row_count(data)


def test_corrupted_footers_are_read_or_refused_never_crash_the_reader(mdir):
    import random

    rng = random.Random(7)
    original = _parquet_bytes(collector_file(session_bars("AAA", DAYS[0]), dup_fraction=0.05, seed=1))
    footer_start = len(original) - 8 - struct.unpack_from("<I", original, len(original) - 8)[0]
    outcomes = set()
    for _ in range(500):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(footer_start, len(original) - 8)] = rng.randrange(256)
        try:
            rows = _footer_num_rows(bytes(data))
        except (FooterError, IndexError, struct.error):
            outcomes.add("refused")
        else:
            assert isinstance(rows, int) and rows >= 0
            outcomes.add("read")
    assert outcomes == {"read", "refused"}
