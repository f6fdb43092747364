"""A batch's archives are checked without decoding them (check_written): the bytes read back from
the temporary file must be the bytes encoded, byte for byte, and the encoder's footer must give
the deduplicated rows' count and schema. Anything else never replaces an archive."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone

import polars as pl
import pytest

from trading_maintenance.core.market_data import batch
from trading_maintenance.core.market_data.archive_write import check_written, encode_archive, write_tmp
from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.layout import archive_dir_for, archive_path
from trading_maintenance_tests.market_data.synth import collector_file, session_bars, write_daily

MAR = "2024-03"
DAYS = [date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5)]
AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)
SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]  # with one worker: batches of two


def write_month(mdir, volume_shift: int = 0) -> None:
    for i, day in enumerate(DAYS):
        for j, sym in enumerate(SYMBOLS):
            bars = session_bars(sym, day).with_columns(pl.col("volume") + volume_shift)
            write_daily(mdir, collector_file(bars, dup_fraction=0.05, shuffle=True, seed=10 * i + j), sym, "1min", day)


@pytest.fixture
def corrupting(monkeypatch):
    """write_tmp whose temporary archive of BBB is changed on disk after its fsync (a byte of its
    middle flipped, or its last byte cut; "none": left intact), as a failing disk or a stray
    writer would; the batch
    path must have been taken (the per-group path decodes what it reads back instead)."""
    careful: list[str] = []
    per_group = batch.consolidate_group
    monkeypatch.setattr(batch, "consolidate_group", lambda symbol, *a, **k: careful.append(symbol) or per_group(symbol, *a, **k))
    real_write_tmp = batch.write_tmp
    how = {"kind": "flip"}

    def write_then_damage(out, target):
        tmp, encoded = real_write_tmp(out, target)
        if target.parent.parent.name == "BBB" and how["kind"] != "none":
            data = bytearray(tmp.read_bytes())
            if how["kind"] == "flip":
                data[len(data) // 2] ^= 0x01
            else:
                del data[-1]
            tmp.write_bytes(bytes(data))
        return tmp, encoded

    monkeypatch.setattr(batch, "write_tmp", write_then_damage)
    yield how
    assert careful == []


@pytest.mark.parametrize("kind", ["flip", "cut"])
def test_an_archive_changed_on_disk_after_it_was_written_is_never_renamed_into_place(mdir, corrupting, kind):
    corrupting["kind"] = kind
    write_month(mdir)
    groups = {g.symbol: g for g in consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1).groups}
    bbb = groups["BBB"]
    assert "verification failed" in bbb.error and not bbb.written and not bbb.verified
    target = archive_path(archive_dir_for(mdir), "BBB", "1min", MAR)
    assert not target.exists() and os.listdir(target.parent) == []  # no archive, no manifest, no temporary left
    assert all(groups[s].verified and groups[s].written and not groups[s].error for s in ("AAA", "CCC", "DDD"))


def test_a_damaged_rewrite_leaves_the_previous_archive_as_it_was(mdir, corrupting):
    corrupting["kind"] = "none"  # the first run writes every archive intact
    write_month(mdir)
    assert all(g.verified for g in consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1).groups)
    target = archive_path(archive_dir_for(mdir), "BBB", "1min", MAR)
    before = target.read_bytes()
    corrupting["kind"] = "flip"
    write_month(mdir, volume_shift=1)  # every bar corrected: every archive rewritten
    groups = {g.symbol: g for g in consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1).groups}
    assert "verification failed" in groups["BBB"].error and not groups["BBB"].written
    assert target.read_bytes() == before
    assert sorted(os.listdir(target.parent)) == sorted([target.name, target.name.replace(".parquet", ".manifest.json")])
    assert all(groups[s].written and groups[s].verified for s in ("AAA", "CCC", "DDD"))


def test_check_written_accepts_only_the_rows_and_schema_encoded(tmp_path):
    out = session_bars("AAA", DAYS[0])
    target = tmp_path / "AAA" / "1min" / f"{MAR}.parquet"
    tmp, encoded = write_tmp(out, target)
    assert check_written(tmp, encoded, out, 0) == (True, out.height, 0)
    # the footer is the encoder's: it must describe exactly the frame the caller vouches for
    assert check_written(tmp, encoded, out.head(out.height - 1), 0)[0] is False
    assert check_written(tmp, encoded, out.with_columns(pl.col("volume").cast(pl.Float64)), 0)[0] is False
    assert check_written(tmp, encoded, out.select(reversed(out.columns)), 0)[0] is False
    # bytes that differ from the encoding (another encoding of the same rows included) are refused
    assert check_written(tmp, encode_archive(out.head(1)), out, 0) == (False, -1, 0)
    assert pl.read_parquet(tmp).equals(out)  # and what was accepted decodes to the rows encoded
