"""per_day_counts looks each bar's New York date and session up by hour position; the counts equal
those of the general way (a join per distinct hour), across a daylight-saving change, for bars
outside sessions and for every kind of timeframe."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from trading_maintenance.core.market_data import quality
from trading_maintenance.core.market_data.months import month_sessions

AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)


def bars(seed: int, month_start: datetime, hours: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    start_us = int(month_start.timestamp() * 1_000_000)
    ts = start_us + rng.integers(0, hours * 60, n) * 60_000_000  # any minute of the span, nights and weekends too
    price = rng.random(n) * 10 - 0.5  # some non-positive prices
    return pl.DataFrame(
        {
            "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "open": price,
            "high": price + rng.random(n) - 0.2,
            "low": price - rng.random(n) + 0.2,
            "close": price + rng.random(n) * 0.1,
            "volume": rng.integers(-5, 1000, n),
            "_file_date": pl.Series([(None, datetime(2024, 3, 8).date(), datetime(2024, 3, 11).date())[k] for k in rng.integers(0, 3, n)], dtype=pl.Date),
            "_group": rng.integers(0, 3, n).astype(np.int32),
        }
    )


@pytest.mark.parametrize("timeframe", ["1min", "1h", "1day", "1week"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_looked_up_days_count_what_the_join_counts(monkeypatch, timeframe, seed):
    sessions = month_sessions("2024-03", AS_OF)  # New York moves to summer time on 10 March
    df = bars(seed, datetime(2024, 2, 28, tzinfo=timezone.utc), 24 * 35)

    def counts():
        return per_day(df, timeframe, sessions).sort("_group", "ny_date", "_file_date", nulls_last=True)

    looked_up = counts()
    monkeypatch.setattr(quality, "_MAX_TABLE_HOURS", 0)  # the general way
    joined = counts()
    assert looked_up.equals(joined)
    assert looked_up["outside_session"].sum() > 0 or timeframe == "1week"


def per_day(df, timeframe, sessions):
    return quality.per_day_counts(df.lazy(), timeframe, sessions, by=["_group"]).collect()


def test_a_null_timestamp_or_a_wide_span_takes_the_general_way():
    sessions = month_sessions("2024-03", AS_OF)
    df = bars(3, datetime(2024, 3, 1, tzinfo=timezone.utc), 24 * 20)
    assert quality._with_day_columns(df.lazy(), sessions.frame) is not None
    with_null = df.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("timestamp")).alias("timestamp"))
    assert quality._with_day_columns(with_null.lazy(), sessions.frame) is None
    wide = pl.concat([df, df.head(1).with_columns(pl.col("timestamp") + pl.duration(days=900))])
    assert quality._with_day_columns(wide.lazy(), sessions.frame) is None
    assert per_day(wide, "1min", sessions)["_rows"].sum() == wide.height
