"""Reading market data after consolidation: monthly archives and daily files together.

    from trading_maintenance.market_data import read_bars
    bars = read_bars("AAPL", "1min", "2024-03-01", "2024-04-01")

The platform's readers keep working whether a day is still a daily file, already in a monthly
archive, or both: rows are merged, deduplicated on (symbol, timeframe, timestamp) with the same
rule as consolidation (daily files win over the archive, later days over earlier ones, later rows
over earlier ones) and sorted by timestamp. Unreadable files, names that are not a real
YYYY-MM-DD.parquet day, directories and symbolic links are skipped (and named in a warning);
writers' temporary files are never read; nothing is ever modified.
"""

from __future__ import annotations

import re
import stat
import warnings
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import polars as pl

from trading_maintenance.core.market_data.io import UnreadableFile, read_market_file
from trading_maintenance.core.market_data.layout import KEY, SCHEMA, archive_dir_for, archive_path, scan_day_folder

__all__ = ["read_bars"]


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # one path component, never '..'


def _utc(value: str | date | datetime, field: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{field}: {value[:40]!r} is not an ISO date or time") from None
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
    parquet/archive/market_data next to it. Returns the contract's columns and types. ValueError
    (naming the argument) for a symbol or timeframe that is not a plain name, or a bad start/end.
    """
    if market_data_dir is None:
        from trading_maintenance.settings import get_settings

        market_data_dir = get_settings().market_data_dir
    market_data_dir = Path(market_data_dir)
    archive_dir = Path(archive_dir) if archive_dir else archive_dir_for(market_data_dir)
    for field, value in (("symbol", symbol), ("timeframe", timeframe)):
        if not _NAME.match(value) or ".." in value:
            raise ValueError(f"{field}: {value[:40]!r} is not a valid {field} name")
    lo, hi = _utc(start, "start"), _utc(end, "end")
    if hi <= lo:
        return pl.DataFrame(schema=SCHEMA)
    # a trading day's file may hold bars whose UTC date is the next day: widen by a day each side
    first_day, last_day = lo.date() - timedelta(days=1), hi.date() + timedelta(days=1)
    months = _months(first_day, last_day)
    paths: list[Path] = []
    skipped: list[str] = []
    for month in months:
        archive = archive_path(archive_dir, symbol, timeframe, month)
        try:
            mode = archive.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            paths.append(archive)
        else:
            skipped.append(f"{archive}: not a regular file")
    folder = market_data_dir / symbol / timeframe
    if folder.is_dir() and not folder.is_symlink():
        days, misnamed = scan_day_folder(folder)
        paths.extend(path for day, path in days if first_day <= day <= last_day)
        skipped.extend(f"{m.path}: {m.reason}" for m in misnamed if m.month is None or m.month in months)
    frames = []
    for path in paths:  # archives first, then daily files by date: later wins
        try:
            df, _ = read_market_file(path, symbol, timeframe)
        except (UnreadableFile, OSError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        frames.append(df.filter((pl.col("timestamp") >= lo) & (pl.col("timestamp") < hi)))
    if skipped:
        warnings.warn(
            f"read_bars skipped {len(skipped)} unreadable file(s) or entries that are not daily files: " + "; ".join(skipped[:5]),
            stacklevel=2,
        )
    if not frames:
        return pl.DataFrame(schema=SCHEMA)
    return pl.concat(frames).unique(subset=KEY, keep="last").sort("timestamp")
