"""read_bars: archives and daily files read together, deduplicated, in range."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.layout import KEY, SCHEMA
from trading_maintenance.market_data import read_bars
from trading_maintenance_tests.market_data.synth import daily_path, session_bars, write_daily

AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_reads_archive_and_daily_files_together(mdir):
    d1, d2, d3 = date(2024, 3, 28), date(2024, 4, 1), date(2024, 4, 2)
    for d in (d1, d2):
        write_daily(mdir, session_bars("AAA", d), "AAA", "1min", d)
    consolidate_month(mdir, "2024-03", as_of=AS_OF)
    consolidate_month(mdir, "2024-04", as_of=AS_OF)
    daily_path(mdir, "AAA", "1min", d1).unlink()  # March now lives only in its archive
    # April 2nd is still a daily file, and it repeats a bar of April 1st with a corrected close
    fix = session_bars("AAA", d2).tail(1).with_columns(pl.col("close") + 1)
    write_daily(mdir, pl.concat([session_bars("AAA", d3), fix]), "AAA", "1min", d3)
    bars = read_bars("AAA", "1min", "2024-03-01", "2024-05-01", market_data_dir=mdir)
    assert bars.height == 3 * 390 and bars.schema == SCHEMA
    assert bars["timestamp"].is_sorted() and bars.n_unique(subset=KEY) == bars.height
    last_of_d2 = bars.filter(pl.col("timestamp") == fix["timestamp"][0])
    assert last_of_d2["close"][0] == pytest.approx(fix["close"][0])  # the daily file wins


def test_range_is_half_open_and_utc(mdir):
    d = date(2024, 3, 28)
    bars = session_bars("AAA", d)
    write_daily(mdir, bars, "AAA", "1min", d)
    start = bars["timestamp"][10]
    end = bars["timestamp"][20]
    got = read_bars("AAA", "1min", start, end, market_data_dir=mdir)
    assert got["timestamp"].to_list() == bars["timestamp"][10:20].to_list()
    naive = read_bars("AAA", "1min", start.replace(tzinfo=None), end.replace(tzinfo=None) + timedelta(minutes=1), market_data_dir=mdir)
    assert naive.height == 11
    assert read_bars("ZZZ", "1min", d, d + timedelta(days=1), market_data_dir=mdir).height == 0


def test_unreadable_file_is_skipped_with_a_warning(mdir):
    d1, d2 = date(2024, 3, 27), date(2024, 3, 28)
    write_daily(mdir, session_bars("AAA", d1), "AAA", "1min", d1)
    daily_path(mdir, "AAA", "1min", d2).write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="unreadable"):
        got = read_bars("AAA", "1min", d1, d2 + timedelta(days=1), market_data_dir=mdir)
    assert got.height == 390
