"""dedup_sorted's fast path (one folded sort key) gives exactly what the general unique + sort
gives: the last written row per key, sorted."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from trading_maintenance.core.market_data.batch import _general_dedup, _two_sort_dedup, dedup_sorted
from trading_maintenance.core.market_data.layout import SCHEMA

BASE_US = int(datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc).timestamp() * 1_000_000)


def _rows(rng: np.random.Generator, groups: list[int], n: int, minutes: int, file_date) -> pl.DataFrame:
    group = rng.choice(groups, n).astype(np.int32)
    ts = BASE_US + rng.integers(0, minutes, n) * 60_000_000
    return pl.DataFrame(
        {
            "symbol": [f"S{g:03d}" for g in group],
            "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "timeframe": ["1min"] * n,
            "open": rng.random(n),
            "high": rng.random(n),
            "low": rng.random(n),
            "close": rng.random(n),
            "volume": rng.integers(0, 1000, n),
            "asset_type": ["stock"] * n,
            "_file_date": pl.Series([file_date] * n, dtype=pl.Date),
            "_group": group,
        }
    ).cast({**SCHEMA})


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_equals_the_general_dedup(seed):
    rng = np.random.default_rng(seed)
    groups = list(range(int(rng.integers(1, 6))))
    daily = _rows(rng, groups, int(rng.integers(1, 400)), 60, datetime(2024, 1, 2).date())
    # previous archives: sorted, one row per key (as verified), for some of the groups
    with_archive = [g for g in groups if rng.random() < 0.7]
    prior = _rows(rng, with_archive or [0], int(rng.integers(0, 300)), 90, None)
    prior = _general_dedup(prior) if prior.height else prior
    combined = pl.concat([prior, daily], how="vertical", rechunk=False)
    expected = _general_dedup(combined)
    assert dedup_sorted(combined).equals(expected)


def test_unsorted_prior_rows_are_sorted_and_later_rows_win():
    rng = np.random.default_rng(99)
    prior = _rows(rng, [0, 1], 200, 30, None)  # not sorted, repeated keys: not trusted as an archive
    daily = _rows(rng, [0, 1], 100, 30, datetime(2024, 1, 2).date())
    combined = pl.concat([prior, daily], how="vertical", rechunk=False)
    got = dedup_sorted(combined)
    assert got.equals(_general_dedup(combined))
    # a key read again takes the daily row's values
    last = daily.unique(subset=["_group", "timestamp"], keep="last")
    joined = got.join(last, on=["_group", "timestamp"], suffix="_d")
    assert joined.height == last.height and (joined["close"] == joined["close_d"]).all()


def test_a_group_with_two_symbols_takes_the_general_path():
    rng = np.random.default_rng(5)
    daily = _rows(rng, [0, 1], 100, 30, datetime(2024, 1, 2).date())
    odd = daily.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(pl.lit("ZZZ")).otherwise(pl.col("symbol")).alias("symbol"))
    assert dedup_sorted(odd).equals(_general_dedup(odd))
    # a second symbol whose rows all share timestamps with later rows of the group: still two symbols
    shadowed = pl.concat([daily.filter(pl.col("_group") == 0).with_columns(pl.lit("ZZZ").alias("symbol")), daily])
    assert dedup_sorted(shadowed).equals(_general_dedup(shadowed))
    assert dedup_sorted(shadowed).filter(pl.col("symbol") == "ZZZ").height > 0


def test_a_null_timestamp_is_kept_as_the_two_stable_sorts_keep_it():
    rng = np.random.default_rng(6)
    daily = _rows(rng, [0, 1], 100, 30, datetime(2024, 1, 2).date())
    with_null = daily.with_columns(pl.when(pl.int_range(pl.len()) % 40 == 3).then(None).otherwise(pl.col("timestamp")).alias("timestamp"))
    got = dedup_sorted(with_null)
    assert got.equals(_two_sort_dedup(with_null))
    assert got["timestamp"].null_count() == with_null["timestamp"].null_count()
