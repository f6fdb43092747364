"""Market data on disk: the contract's schema, where files live and what their names mean.

    {market_data_dir}/{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet    daily files (the collector's)
    {archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.parquet           monthly archives (zstd)
    {archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.manifest.json     what an archive was verified against
    {quarantine_dir}/{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet     unreadable files, with a .reason.txt

Only a regular file named YYYY-MM-DD.parquet with a real date is a daily file. Anything else in a
{SYMBOL}/{timeframe} folder (an impossible date, another name, a directory, a symlink) is a
misnamed entry. Writers' temporary files (hidden, *.tmp, *.partial) are neither.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import polars as pl

KEY = ["symbol", "timeframe", "timestamp"]
SCHEMA = pl.Schema(
    {
        "symbol": pl.String,
        "timestamp": pl.Datetime("us", "UTC"),
        "timeframe": pl.String,
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Int64,
        "asset_type": pl.String,
    }
)
COLUMNS = list(SCHEMA.names())
INTRADAY_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "1h": 60, "4h": 240}
DAILY_TIMEFRAMES = {"1day"}
TIMEFRAMES = [*INTRADAY_MINUTES, "1day", "1week", "1month"]
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
_MONTH_FILE = re.compile(r"^(\d{4}-\d{2})\.parquet$")
_NAMED_MONTH = re.compile(r"^(\d{4}-(\d{2}))(?!\d)")


def archive_dir_for(market_data_dir: str | Path) -> Path:
    """parquet/archive/market_data next to parquet/market_data."""
    return Path(market_data_dir).parent / "archive" / "market_data"


def quarantine_dir_for(market_data_dir: str | Path) -> Path:
    return Path(market_data_dir).parent / "quarantine" / "market_data"


def archive_path(archive_dir: str | Path, symbol: str, timeframe: str, month: str) -> Path:
    return Path(archive_fspath(archive_dir, symbol, timeframe, month))


def archive_fspath(archive_dir: str | Path, symbol: str, timeframe: str, month: str) -> str:
    """archive_path as a string, without pathlib (a re-run plans every group of a month, mostly unchanged)."""
    return os.path.join(archive_dir, symbol, timeframe, f"{month}.parquet")


def manifest_path(archive: str | Path) -> Path:
    return Path(manifest_fspath(archive))


def manifest_fspath(archive: str | Path) -> str:
    """manifest_path as a string, without pathlib (a re-run looks up every archive's manifest)."""
    text = os.fspath(archive)
    return text.removesuffix(".parquet") + ".manifest.json"


def parse_day_name(name: str) -> date | None:
    """The trading day a daily file's name gives: exactly YYYY-MM-DD.parquet with a real date."""
    m = _DAY_FILE.match(name)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def is_temporary_name(name: str) -> bool:
    """A writer's file in progress (hidden, or *.tmp / *.partial): never data, never quarantined;
    the writer renames it or its own next run removes it."""
    return name.startswith(".") or name.endswith((".tmp", ".partial"))


def _named_month(name: str) -> str | None:
    """The real month a name starts with ('2026-02-30.parquet' -> '2026-02'), else None."""
    m = _NAMED_MONTH.match(name)
    return m.group(1) if m and 1 <= int(m.group(2)) <= 12 and int(name[:4]) >= 1 else None


@lru_cache(maxsize=16384)
def _classify_name(name: str) -> tuple[bool, str | None, bool, date | None]:
    """(temporary, named month, YYYY-MM-DD.parquet form, day) of an entry's name: a pure function of
    the name, cached because every symbol's folder holds the same few dozen dates."""
    return is_temporary_name(name), _named_month(name), _DAY_FILE.match(name) is not None, parse_day_name(name)


def day_of_name(name: str) -> date | None:
    """parse_day_name, cached for names short enough to be one (a manifest's names are not trusted:
    a long one is never kept)."""
    return _classify_name(name)[3] if len(name) <= 19 else None  # YYYY-MM-DD.parquet (+ a newline $ allows)


@dataclass(frozen=True)
class MisnamedEntry:
    """Something in a {SYMBOL}/{timeframe} folder that is not a daily file."""

    path: Path
    reason: str
    month: str | None  # the month its name points at, if any: that month's consolidation handles it

    def as_dict(self) -> dict:
        return {"path": str(self.path), "reason": self.reason, "month": self.month}


def _list_day_folder(
    folder: str | Path, month: str | None, with_stat: bool
) -> tuple[list[tuple[date, str, tuple[int, int] | None]], list[MisnamedEntry]]:
    """(day, name, (size, mtime_ns) or None) of a folder's daily files, sorted by day, and its
    misnamed entries (see scan_day_folder). with_stat: each daily file's lstat from its directory
    entry (a regular file: the same as its stat), None when it vanished meanwhile."""
    days: list[tuple[date, str, tuple[int, int] | None]] = []
    misnamed: list[MisnamedEntry] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            temporary, named, valid_form, day = _classify_name(name)
            if temporary:
                continue
            if month and named is not None and named != month:
                continue  # another month's: that month's run looks at it
            if entry.is_symlink():
                reason = "symbolic link (never followed)"
            elif entry.is_dir(follow_symlinks=False):
                reason = "a directory named like a daily file" if valid_form else "a directory, not a daily file"
            elif not entry.is_file(follow_symlinks=False):
                reason = "not a regular file"
            elif day is not None:
                stat = None
                if with_stat:
                    try:
                        st = entry.stat(follow_symlinks=False)
                        stat = (st.st_size, st.st_mtime_ns)
                    except OSError:
                        pass  # vanished meanwhile: whoever plans it stats it again
                days.append((day, name, stat))
                continue
            elif valid_form:
                reason = f"{name.removesuffix('.parquet')} is not a real date"
            else:
                reason = "name is not YYYY-MM-DD.parquet"
            misnamed.append(MisnamedEntry(Path(entry.path), reason, named))
    days.sort(key=_day_of_item)  # a folder's days are unique: a daily file's name is its date
    misnamed.sort(key=lambda m: m.path.name)
    return days, misnamed


def _day_of_item(item: tuple) -> date:
    return item[0]


def scan_day_folder(folder: str | Path, month: str | None = None) -> tuple[list[tuple[date, Path]], list[MisnamedEntry]]:
    """(day, path) of the daily files of one {SYMBOL}/{timeframe} folder, sorted, and what is in it
    that is not a daily file: a name that is not YYYY-MM-DD.parquet or not a real date, a
    directory, a symbolic link (never followed), anything not a regular file. Temporary files are
    neither. With month, only the files of that month, and only the misnamed entries whose name
    points at that month or at none."""
    days, misnamed = _list_day_folder(folder, month, with_stat=False)
    base = Path(folder)  # a child's Path from its folder's: a name parsed, not the whole path
    return [(day, base / name) for day, name, _ in days], misnamed


class DailyFile:
    """A daily file: {folder}/{name}, the (symbol, timeframe) whose folder it is in, and its day.

    `listed_stat` is the (size, mtime_ns) the folder's listing saw (None when not listed so): a
    re-run compares it with the manifest's without another stat. The Path is built when first
    asked for: a re-run reads a few of the month's thousands of files."""

    __slots__ = ("folder", "name", "symbol", "timeframe", "day", "listed_stat", "_path")

    def __init__(self, path: str | Path, symbol: str, timeframe: str, day: date, listed_stat: tuple[int, int] | None = None):
        path = Path(path)
        self._path = path
        self.folder, self.name = str(path.parent), path.name
        self.symbol, self.timeframe, self.day, self.listed_stat = symbol, timeframe, day, listed_stat

    @classmethod
    def listed(cls, folder: str, name: str, symbol: str, timeframe: str, day: date, stat: tuple[int, int] | None) -> DailyFile:
        """A file as a folder's listing found it (folder as os.scandir gave it)."""
        self = cls.__new__(cls)
        self._path = None
        self.folder, self.name, self.symbol, self.timeframe, self.day, self.listed_stat = folder, name, symbol, timeframe, day, stat
        return self

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(self.folder, self.name)
        return self._path

    @property
    def fspath(self) -> str:
        """The file's path as a string, without a Path (a batch reads thousands: pathlib's parsing
        held the GIL ~10 us each)."""
        return os.path.join(self.folder, self.name)

    @property
    def month(self) -> str:
        return self.day.isoformat()[:7]

    def _key(self) -> tuple:
        return (self.folder, self.name, self.symbol, self.timeframe, self.day)

    def __eq__(self, other) -> bool:
        return isinstance(other, DailyFile) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"DailyFile({str(self.path)!r}, {self.symbol!r}, {self.timeframe!r}, {self.day!r})"


def discover_daily_files(market_data_dir: str | Path, month: str | None = None) -> dict[tuple[str, str], list[DailyFile]]:
    """Daily files grouped by (symbol, timeframe), each list sorted by date. Other names are ignored;
    symlinks are never followed."""
    return scan_daily_files(market_data_dir, month)[0]


def scan_daily_files(
    market_data_dir: str | Path, month: str | None = None
) -> tuple[dict[tuple[str, str], list[DailyFile]], list[MisnamedEntry]]:
    """discover_daily_files, plus the entries of the dated folders that are not daily files
    (see scan_day_folder). Each file carries the (size, mtime_ns) its directory entry had: one
    stat per file, made while listing."""
    root = Path(market_data_dir)
    groups: dict[tuple[str, str], list[DailyFile]] = {}
    misnamed: list[MisnamedEntry] = []
    if not root.is_dir():
        return groups, misnamed
    for sym_entry in os.scandir(root):
        if not sym_entry.is_dir(follow_symlinks=False):
            continue
        for tf_entry in os.scandir(sym_entry.path):
            if not tf_entry.is_dir(follow_symlinks=False):
                continue
            days, bad = _list_day_folder(tf_entry.path, month, with_stat=True)
            misnamed.extend(bad)
            if days:
                folder, sym, tf = tf_entry.path, sym_entry.name, tf_entry.name
                groups[(sym, tf)] = [DailyFile.listed(folder, name, sym, tf, day, stat) for day, name, stat in days]
    return groups, misnamed


def discover_archives(archive_dir: str | Path, month: str | None = None) -> dict[tuple[str, str, str], Path]:
    """Monthly archives keyed by (symbol, timeframe, month)."""
    root = Path(archive_dir)
    found: dict[tuple[str, str, str], Path] = {}
    if not root.is_dir():
        return found
    for sym_entry in os.scandir(root):
        if not sym_entry.is_dir(follow_symlinks=False):
            continue
        for tf_entry in os.scandir(sym_entry.path):
            if not tf_entry.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(tf_entry.path):
                m = _MONTH_FILE.match(entry.name)
                if m and (month is None or m.group(1) == month) and entry.is_file(follow_symlinks=False):
                    found[(sym_entry.name, tf_entry.name, m.group(1))] = Path(entry.path)
    return found

