"""Synthetic market data shaped like the collector's files (for tests, the benchmark and demos).

Bars follow the real NYSE sessions (early closes give shorter days, holidays no file), and the
collector's habits can be switched on: duplicate rows appended, rows out of order.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from trading_maintenance.core.common.market_hours import session_bounds, trading_days
from trading_maintenance.core.market_data.layout import INTRADAY_MINUTES, SCHEMA


def session_bars(symbol: str, day: date, timeframe: str = "1min", seed: int = 0, base_price: float = 100.0) -> pl.DataFrame:
    """One regular session of sane bars for symbol on a trading day."""
    open_, close = session_bounds(day)
    minutes = INTRADAY_MINUTES[timeframe]
    n = int((close - open_).total_seconds() // 60 // minutes)
    rng = np.random.default_rng(abs(hash((symbol, day.toordinal(), seed))) % (2**32))
    start = np.datetime64(open_.replace(tzinfo=None), "us")
    ts = start + np.arange(n) * np.timedelta64(minutes * 60_000_000, "us")
    close_px = base_price * np.exp(np.cumsum(rng.normal(0, 0.0005, n)))
    open_px = np.concatenate([[base_price], close_px[:-1]])
    spread = np.abs(rng.normal(0, 0.0003, n)) * close_px
    high = np.maximum(open_px, close_px) + spread
    low = np.minimum(open_px, close_px) - spread
    return pl.DataFrame(
        {
            "symbol": [symbol] * n,
            "timestamp": ts,
            "timeframe": [timeframe] * n,
            "open": open_px,
            "high": high,
            "low": low,
            "close": close_px,
            "volume": rng.integers(100, 10_000, n),
            "asset_type": ["stock"] * n,
        }
    ).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC")).cast(dict(SCHEMA))


def collector_file(df: pl.DataFrame, dup_fraction: float = 0.0, shuffle: bool = False, seed: int = 0) -> pl.DataFrame:
    """What the collector writes: the bars plus re-appended duplicates, optionally out of order."""
    if dup_fraction > 0 and df.height:
        dups = df.sample(fraction=dup_fraction, seed=seed)
        df = pl.concat([df, dups])
    if shuffle and df.height:
        df = df.sample(fraction=1.0, shuffle=True, seed=seed + 1)
    return df


def daily_path(market_data_dir: Path, symbol: str, timeframe: str, day: date) -> Path:
    return Path(market_data_dir) / symbol / timeframe / f"{day.isoformat()}.parquet"


def write_daily(market_data_dir: Path, df: pl.DataFrame, symbol: str, timeframe: str, day: date) -> Path:
    path = daily_path(market_data_dir, symbol, timeframe, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, compression="snappy")
    return path


def generate(
    market_data_dir: Path,
    symbols: list[str],
    start: date,
    end: date,
    timeframe: str = "1min",
    dup_fraction: float = 0.02,
    shuffle: bool = True,
) -> list[Path]:
    """Daily files for every symbol and trading day from start to end inclusive."""
    paths = []
    for day in trading_days(start, end):
        for i, symbol in enumerate(symbols):
            bars = session_bars(symbol, day, timeframe, base_price=50.0 + i)
            paths.append(write_daily(market_data_dir, collector_file(bars, dup_fraction, shuffle, seed=day.toordinal() + i), symbol, timeframe, day))
    return paths


def month_of(day: date) -> str:
    return day.isoformat()[:7]


def last_trading_day_before(day: date) -> date:
    while True:
        day -= timedelta(days=1)
        if trading_days(day, day):
            return day
