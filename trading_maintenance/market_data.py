"""Reading market data after consolidation: monthly archives and daily files together.

    from trading_maintenance.market_data import read_bars
    bars = read_bars("AAPL", "1min", "2024-03-01", "2024-04-01")

The platform's readers keep working whether a day is still a daily file, already in a monthly
archive, or both: rows are merged, deduplicated on (symbol, timeframe, timestamp) with the same
rule as consolidation (daily files win over the archive, later days over earlier ones, later rows
over earlier ones) and sorted by timestamp. Unreadable files are skipped (and named in a warning);
nothing is ever modified.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import polars as pl

from trading_maintenance.core import market_data as md

__all__ = ["read_bars"]


def _utc(value: str | date | datetime) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _months(start: date, end: date) -> list[str]:
    months, cur = [], start.replace(day=1)
    while cur <= end:
        months.append(cur.isoformat()[:7])
        cur = (cur + timedelta(days=32)).replace(day=1)
    return months


def read_bars(
    symbol: str,
    timeframe: str,
    start: str | date | datetime,
    end: str | date | datetime,
    market_data_dir: str | Path | None = None,
    archive_dir: str | Path | None = None,
) -> pl.DataFrame:
    """Bars of symbol/timeframe with start <= timestamp < end (naive times and dates are UTC).

    market_data_dir defaults to the configured settings.market_data_dir; archive_dir to
    parquet/archive/market_data next to it. Returns the contract's columns and types.
    """
    if market_data_dir is None:
        from trading_maintenance.settings import get_settings

        market_data_dir = get_settings().market_data_dir
    market_data_dir = Path(market_data_dir)
    archive_dir = Path(archive_dir) if archive_dir else md.archive_dir_for(market_data_dir)
    lo, hi = _utc(start), _utc(end)
    if hi <= lo:
        return pl.DataFrame(schema=md.SCHEMA)
    # a trading day's file may hold bars whose UTC date is the next day: widen by a day each side
    first_day, last_day = lo.date() - timedelta(days=1), hi.date() + timedelta(days=1)
    paths: list[Path] = []
    for month in _months(first_day, last_day):
        archive = md.archive_path(archive_dir, symbol, timeframe, month)
        if archive.is_file():
            paths.append(archive)
    folder = market_data_dir / symbol / timeframe
    if folder.is_dir():
        daily = sorted(p for p in folder.glob("*.parquet") if (d := md.file_day(p)) is not None and first_day <= d <= last_day)
        paths.extend(daily)
    frames, skipped = [], []
    for path in paths:  # archives first, then daily files by date: later wins
        try:
            df, _ = md.read_market_file(path, symbol, timeframe)
        except (md.UnreadableFile, OSError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        frames.append(df.filter((pl.col("timestamp") >= lo) & (pl.col("timestamp") < hi)))
    if skipped:
        warnings.warn(f"read_bars skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped[:5]), stacklevel=2)
    if not frames:
        return pl.DataFrame(schema=md.SCHEMA)
    return pl.concat(frames).unique(subset=md.KEY, keep="last").sort("timestamp")
