"""Market data: consolidating the collector's daily parquet files into verified monthly archives.

Pure logic, no Dagster. Layout (platform contract):

    {market_data_dir}/{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet    daily files (the collector's)
    {archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.parquet           monthly archives (zstd)
    {archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.manifest.json     what an archive was verified against
    {quarantine_dir}/{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet     unreadable files, with a .reason.txt

Rules:
- A duplicate is a repeated (symbol, timeframe, timestamp); the last written row wins, where the
  order of writing is: the existing archive first, then daily files by date, then row order inside a
  file. The result does not depend on the order in which files arrived on disk.
- Only a regular file named YYYY-MM-DD.parquet with a real date is a daily file. Anything else in a
  {SYMBOL}/{timeframe} folder (an impossible date, another name, a directory, a symlink) is skipped
  by readers with a warning and quarantined with its reason by the consolidation of the month it
  names (of any month when it names none). Writers' temporary files (hidden, *.tmp, *.partial) are
  neither: never read; those of crashed consolidations are removed by the month's next run.
- Old schemas are normalised (missing asset_type -> null, timestamps in ns or without zone -> us UTC,
  numeric types cast); a file that cannot be read or normalised is quarantined, never fatal.
- Bars failing sanity (OHLC, volume, prices, session, file date) are kept and counted, never changed.
- An archive is written to a temporary name, fsynced, read back and compared with the
  deduplicated sources, and only then renamed over the previous archive (a bad write never
  replaces a good archive) and described by a manifest; only daily files listed in a manifest that
  matches its archive, with unchanged size and mtime, can ever be deleted (archived_daily_files).
- Speed: batches of one timeframe's groups are read in one multi-file scan, deduplicated with two
  stable sorts, checked in one query, and read back in one scan; anything unusual (old schema,
  unreadable file) sends the batch to the careful per-group path. Both paths give equal archives.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import polars as pl

from trading_maintenance.core.common.market_hours import session_bounds, trading_days
from trading_maintenance.core.common.atomic import fsync_dir as _fsync_dir

NY = "America/New_York"
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
_SCHEMA_ITEMS = list(SCHEMA.items())
INTRADAY_MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "1h": 60, "4h": 240}
DAILY_TIMEFRAMES = {"1day"}
TIMEFRAMES = [*INTRADAY_MINUTES, "1day", "1week", "1month"]
WRITE_THREADS = 2  # archives of one batch written at a time (polars and fsync release the GIL)
ARCHIVE_ZSTD_LEVEL = 1  # measured: ~25% faster writes than level 3 for ~5% larger archives
OHLC_TOLERANCE = 1e-6  # relative: high may sit this far below max(open, close) before it counts
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
_MONTH_FILE = re.compile(r"^(\d{4}-\d{2})\.parquet$")
_NAMED_MONTH = re.compile(r"^(\d{4}-(\d{2}))(?!\d)")
ANOMALIES = ("high_below_open_close", "low_above_open_close", "negative_volume", "non_positive_price", "outside_session", "outside_file_date")


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------
def archive_dir_for(market_data_dir: str | Path) -> Path:
    """parquet/archive/market_data next to parquet/market_data."""
    return Path(market_data_dir).parent / "archive" / "market_data"


def quarantine_dir_for(market_data_dir: str | Path) -> Path:
    return Path(market_data_dir).parent / "quarantine" / "market_data"


def archive_path(archive_dir: str | Path, symbol: str, timeframe: str, month: str) -> Path:
    return Path(archive_dir) / symbol / timeframe / f"{month}.parquet"


def manifest_path(archive: Path) -> Path:
    return archive.with_name(archive.name.removesuffix(".parquet") + ".manifest.json")


def month_bounds(month: str) -> tuple[date, date]:
    """First and last calendar day of 'YYYY-MM'."""
    first = date.fromisoformat(month + "-01")
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


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


@dataclass(frozen=True)
class MisnamedEntry:
    """Something in a {SYMBOL}/{timeframe} folder that is not a daily file."""

    path: Path
    reason: str
    month: str | None  # the month its name points at, if any: that month's consolidation handles it

    def as_dict(self) -> dict:
        return {"path": str(self.path), "reason": self.reason, "month": self.month}


def scan_day_folder(folder: str | Path, month: str | None = None) -> tuple[list[tuple[date, Path]], list[MisnamedEntry]]:
    """(day, path) of the daily files of one {SYMBOL}/{timeframe} folder, sorted, and what is in it
    that is not a daily file: a name that is not YYYY-MM-DD.parquet or not a real date, a
    directory, a symbolic link (never followed), anything not a regular file. Temporary files are
    neither. With month, only the files of that month, and only the misnamed entries whose name
    points at that month or at none."""
    days: list[tuple[date, Path]] = []
    misnamed: list[MisnamedEntry] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if is_temporary_name(name):
                continue
            named = _named_month(name)
            if month and named is not None and named != month:
                continue  # another month's: that month's run looks at it
            valid_form = _DAY_FILE.match(name) is not None
            day = parse_day_name(name)
            if entry.is_symlink():
                reason = "symbolic link (never followed)"
            elif entry.is_dir(follow_symlinks=False):
                reason = "a directory named like a daily file" if valid_form else "a directory, not a daily file"
            elif not entry.is_file(follow_symlinks=False):
                reason = "not a regular file"
            elif day is not None:
                days.append((day, Path(entry.path)))
                continue
            elif valid_form:
                reason = f"{name.removesuffix('.parquet')} is not a real date"
            else:
                reason = "name is not YYYY-MM-DD.parquet"
            misnamed.append(MisnamedEntry(Path(entry.path), reason, named))
    days.sort()
    misnamed.sort(key=lambda m: m.path.name)
    return days, misnamed


@dataclass(frozen=True)
class DailyFile:
    path: Path
    symbol: str
    timeframe: str
    day: date

    @property
    def month(self) -> str:
        return self.day.isoformat()[:7]


def discover_daily_files(market_data_dir: str | Path, month: str | None = None) -> dict[tuple[str, str], list[DailyFile]]:
    """Daily files grouped by (symbol, timeframe), each list sorted by date. Other names are ignored;
    symlinks are never followed."""
    return scan_daily_files(market_data_dir, month)[0]


def scan_daily_files(
    market_data_dir: str | Path, month: str | None = None
) -> tuple[dict[tuple[str, str], list[DailyFile]], list[MisnamedEntry]]:
    """discover_daily_files, plus the entries of the dated folders that are not daily files
    (see scan_day_folder)."""
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
            days, bad = scan_day_folder(tf_entry.path, month)
            misnamed.extend(bad)
            if days:
                groups[(sym_entry.name, tf_entry.name)] = [DailyFile(path, sym_entry.name, tf_entry.name, day) for day, path in days]
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


# ----------------------------------------------------------------------------------------------
# Reading and normalising
# ----------------------------------------------------------------------------------------------
class UnreadableFile(Exception):
    """A file that cannot be read or normalised; the message is the quarantine reason."""


def normalise(df: pl.DataFrame, symbol: str | None = None, timeframe: str | None = None) -> tuple[pl.DataFrame, list[str]]:
    """The contract's columns and types. Returns (frame, notes on what was normalised).

    Fixes only representation (types, zone, a missing optional column); never values. Raises
    UnreadableFile when a required column is missing or a value cannot be converted.
    """
    if df.schema == SCHEMA:
        return df, []
    notes: list[str] = []
    missing = [c for c in ("timestamp", "open", "high", "low", "close") if c not in df.columns]
    if missing:
        raise UnreadableFile(f"required column(s) missing: {', '.join(missing)}")
    exprs = []
    for name, dtype in SCHEMA.items():
        if name not in df.columns:
            if name == "symbol" and symbol is not None:
                exprs.append(pl.lit(symbol, pl.String).alias(name))
            elif name == "timeframe" and timeframe is not None:
                exprs.append(pl.lit(timeframe, pl.String).alias(name))
            else:
                exprs.append(pl.lit(None, dtype).alias(name))
            notes.append(f"missing column {name} added")
            continue
        current = df.schema[name]
        if current == dtype:
            exprs.append(pl.col(name))
            continue
        notes.append(f"{name}: {current} -> {dtype}")
        if name == "timestamp":
            if isinstance(current, pl.Datetime):
                col = pl.col(name)
                col = col.dt.replace_time_zone("UTC") if current.time_zone is None else col.dt.convert_time_zone("UTC")
                exprs.append(col.dt.cast_time_unit("us").alias(name))
            elif current in (pl.Int64, pl.UInt64, pl.Int32):
                # epoch numbers: guess the unit from magnitude (ns ~1e18, us ~1e15, ms ~1e12, s ~1e9)
                exprs.append(pl.col(name))  # handled below
            elif current == pl.String:
                exprs.append(pl.col(name).str.to_datetime(time_zone="UTC", strict=True).dt.cast_time_unit("us").alias(name))
            else:
                raise UnreadableFile(f"timestamp of type {current} cannot be read as a time")
        else:
            exprs.append(pl.col(name).cast(dtype, strict=True).alias(name))
    try:
        out = df.select(exprs)
        if out.schema["timestamp"] != SCHEMA["timestamp"]:
            sample = out["timestamp"].drop_nulls().abs().max() or 0
            unit = "ns" if sample > 1e17 else "us" if sample > 1e14 else "ms" if sample > 1e11 else "s"
            out = out.with_columns(
                pl.from_epoch(pl.col("timestamp"), time_unit=unit).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
            )
            notes.append(f"timestamp: epoch {unit} -> datetime")
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        raise UnreadableFile(f"cannot normalise: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return out, notes


def read_market_file(path: str | Path, symbol: str | None = None, timeframe: str | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Read and normalise one parquet file; UnreadableFile when it is truncated, corrupt or unusable."""
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars/arrow raise many kinds for corrupt files
        raise UnreadableFile(f"unreadable parquet: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    return normalise(df, symbol, timeframe)


def quarantine_file(path: Path, market_data_dir: Path, quarantine_dir: Path, reason: str) -> Path:
    """Move a bad file under quarantine_dir (same relative path, never overwriting) with a reason file."""
    try:
        rel = path.relative_to(market_data_dir)
    except ValueError:
        rel = Path(path.name)
    target = quarantine_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        target = target.with_name(f"{target.stem}.{int(time.time() * 1000)}{target.suffix}")
    reason_file = target.with_name(target.name + ".reason.txt")
    reason_file.write_text(
        f"source: {path}\nquarantined_at: {datetime.now(timezone.utc).isoformat()}\nreason: {reason}\n"
    )
    shutil.move(str(path), str(target))
    return target


# ----------------------------------------------------------------------------------------------
# Sessions, sanity and coverage
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonthSessions:
    """The NYSE sessions of a month that count for coverage (closed by `as_of`)."""

    month: str
    frame: pl.DataFrame  # ny_date, open, close (UTC)
    counted_days: tuple[date, ...]  # trading days whose session had closed by as_of


def month_sessions(month: str, as_of: datetime | None = None, calendar_name: str = "XNYS") -> MonthSessions:
    first, last = month_bounds(month)
    as_of = as_of or datetime.now(timezone.utc)
    days = trading_days(first, last, calendar_name)
    bounds = [session_bounds(d, calendar_name) for d in days]
    frame = pl.DataFrame(
        {
            "ny_date": days,
            "session_open": [b[0] for b in bounds],
            "session_close": [b[1] for b in bounds],
        },
        schema={"ny_date": pl.Date, "session_open": pl.Datetime("us", "UTC"), "session_close": pl.Datetime("us", "UTC")},
    )
    counted = tuple(d for d, b in zip(days, bounds) if b[1] <= as_of)
    return MonthSessions(month, frame, counted)


def expected_bars(open_: datetime, close: datetime, bar_minutes: int) -> int:
    return math.ceil((close - open_).total_seconds() / 60 / bar_minutes)


_HOUR_US = 3_600_000_000


def _with_ny_date(lf: pl.LazyFrame) -> pl.LazyFrame:
    """lf with `ny_date`, the New York date of each timestamp.

    New York's offsets from UTC are whole hours and change on whole UTC hours, so the date is
    converted once per distinct UTC hour and joined back (a time-zone conversion per row costs
    more than the rest of the checks). Exact: when any hour's first and last microsecond fall on
    different New York dates, every row is converted instead."""
    hour = pl.col("timestamp").dt.epoch("us") // _HOUR_US
    try:
        hours = lf.select(hour.unique().alias("_hour")).collect()
        start = pl.from_epoch(pl.col("_hour") * _HOUR_US, time_unit="us").dt.replace_time_zone("UTC")
        end = start + pl.duration(microseconds=_HOUR_US - 1)
        table = hours.select(
            "_hour",
            start.dt.convert_time_zone(NY).dt.date().alias("ny_date"),
            end.dt.convert_time_zone(NY).dt.date().alias("_end"),
        )
        exact = not bool((table["ny_date"] != table["_end"]).any())
    except pl.exceptions.PolarsError:  # e.g. a timestamp too far out to convert per hour
        exact = False
    if not exact:
        return lf.with_columns(pl.col("timestamp").dt.convert_time_zone(NY).dt.date().alias("ny_date"))
    return (
        lf.with_columns(hour.alias("_hour"))
        .join(table.lazy().select("_hour", "ny_date"), on="_hour", how="left")
        .drop("_hour")
    )


def _per_day_counts(lf: pl.LazyFrame, timeframe: str, sessions: MonthSessions, by: list[str] | None = None) -> pl.LazyFrame:
    """Sanity flags counted per New York day (and per `by` columns): one pass over the bars."""
    tol = OHLC_TOLERANCE
    hi_oc = pl.max_horizontal("open", "close")
    lo_oc = pl.min_horizontal("open", "close")
    intraday = timeframe in INTRADAY_MINUTES
    checks_date = intraday or timeframe in DAILY_TIMEFRAMES
    lf = _with_ny_date(lf)
    if intraday:
        lf = lf.join(sessions.frame.lazy(), on="ny_date", how="left")
        outside_session = (
            pl.col("session_open").is_null()
            | (pl.col("timestamp") < pl.col("session_open"))
            | (pl.col("timestamp") >= pl.col("session_close"))
        )
    elif timeframe in DAILY_TIMEFRAMES:
        outside_session = ~pl.col("ny_date").is_in(sessions.frame["ny_date"].implode())
    else:
        outside_session = pl.lit(False)
    flags = {
        "high_below_open_close": pl.col("high") < hi_oc * (1 - tol),
        "low_above_open_close": pl.col("low") > lo_oc * (1 + tol),
        "negative_volume": pl.col("volume") < 0,
        "non_positive_price": pl.any_horizontal(pl.col("open", "high", "low", "close") <= 0),
        "outside_session": outside_session,
    }
    return (
        lf.with_columns(**{k: v.fill_null(False) for k, v in flags.items()})
        .group_by([*(by or []), "ny_date"])
        .agg(
            *(pl.col(k).sum() for k in flags),
            (
                (pl.col("ny_date") != pl.col("_file_date")).fill_null(False).sum() if checks_date else pl.lit(0, pl.UInt32)
            ).alias("outside_file_date"),
            pl.any_horizontal(*(pl.col(k) for k in flags)).sum().alias("bad_bars"),
            (~pl.col("outside_session")).sum().alias("_in_session"),
        )
    )


QUALITY_COUNTS = (*ANOMALIES, "bad_bars")


def _expected_by_day(timeframe: str, sessions: MonthSessions) -> list[tuple[date, int]]:
    """(day, expected bars) of the counted sessions, for timeframes whose coverage is checked."""
    if not (timeframe in INTRADAY_MINUTES or timeframe in DAILY_TIMEFRAMES):
        return []
    counted = set(sessions.counted_days)
    minutes = INTRADAY_MINUTES.get(timeframe)
    return [
        (d, expected_bars(o, c, minutes) if minutes else 1)
        for d, o, c in sessions.frame.iter_rows()
        if d in counted
    ]


def _quality_from_rows(rows: list[dict], timeframe: str, expected_days: list[tuple[date, int]]) -> dict[str, int]:
    """_quality_from_days on per-day rows already in Python (one group's rows of a batch)."""
    result = {k: sum(int(r[k] or 0) for r in rows) for k in QUALITY_COUNTS}
    missing_days = expected = present = 0
    if timeframe in INTRADAY_MINUTES or timeframe in DAILY_TIMEFRAMES:
        have: dict = {}
        for r in rows:
            have[r["ny_date"]] = have.get(r["ny_date"], 0) + int(r["_in_session"] or 0)
        for d, want in expected_days:
            n = have.get(d, 0)
            if n == 0:
                missing_days += 1
            expected += want
            present += min(n, want)
    result["missing_days"] = missing_days
    result["expected_bars"] = expected
    result["missing_bars"] = expected - present
    return result


def _quality_from_days(per_day: pl.DataFrame, timeframe: str, sessions: MonthSessions) -> dict[str, int]:
    return _quality_from_rows(per_day.to_dicts(), timeframe, _expected_by_day(timeframe, sessions))


def quality(df: pl.DataFrame, timeframe: str, sessions: MonthSessions) -> dict[str, int]:
    """Sanity counts and calendar coverage of one deduplicated symbol-timeframe-month.

    df carries the contract columns plus `_file_date` (Date, null for rows from an older archive).
    Coverage: trading days closed by sessions' as_of without any in-session bar are missing days;
    intraday sessions expect ceil(session minutes / bar minutes) bars (early closes are shorter).
    """
    return _quality_from_days(_per_day_counts(df.lazy(), timeframe, sessions).collect(), timeframe, sessions)


# ----------------------------------------------------------------------------------------------
# Atomic file writing
# ----------------------------------------------------------------------------------------------
def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


STALE_TMP_SECONDS = 3600


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover (this process writes each name once at a time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def stale_tmp(folder: Path, *names: str) -> list[Path]:
    """Temporary files (tmp_name) left by a crashed writer of any of `names` in folder: its process
    is gone, or the file is over an hour old. A live concurrent writer's file is not one."""
    prefixes = tuple(f".{name}." for name in names)
    found = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if not (entry.name.startswith(prefixes) and entry.name.endswith(".tmp")):
            continue
        prefix = next(p for p in prefixes if entry.name.startswith(p))
        pid_text = entry.name[len(prefix):-4]
        try:
            stale = not (pid_text.isdigit() and _pid_alive(int(pid_text))) or now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
        except FileNotFoundError:
            continue
        if stale:
            found.append(Path(entry.path))
    return found


def remove_stale_tmp(folder: Path, name: str) -> list[Path]:
    """Remove stale_tmp(folder, name); returns what was removed."""
    removed = stale_tmp(folder, name)
    for entry in removed:
        entry.unlink(missing_ok=True)
    return removed


def find_stale_temporaries(archive_dir: str | Path, month: str) -> list[Path]:
    """Every temporary name a consolidation of month writes (its archives' and manifests') that a
    crashed writer left in the archive tree."""
    root = Path(archive_dir)
    names = (f"{month}.parquet", manifest_path(Path(f"{month}.parquet")).name)
    found: list[Path] = []
    if not root.is_dir():
        return found
    for sym_entry in os.scandir(root):
        if not sym_entry.is_dir(follow_symlinks=False):
            continue
        for tf_entry in os.scandir(sym_entry.path):
            if tf_entry.is_dir(follow_symlinks=False):
                found.extend(stale_tmp(Path(tf_entry.path), *names))
    return sorted(found)


def write_json_atomic(data: dict, path: Path, fsync_dir: bool = True, fsync_file: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path.parent, path.name)
    tmp = tmp_name(path)
    try:
        text = json.dumps(data, separators=(",", ":"), default=str)  # dumps uses the C encoder
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            if fsync_file:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync_dir:
        _fsync_dir(path.parent)


# ----------------------------------------------------------------------------------------------
# Consolidation of one symbol-timeframe-month
# ----------------------------------------------------------------------------------------------
@dataclass
class GroupResult:
    symbol: str
    timeframe: str
    month: str
    archive: str
    files_read: int = 0
    rows_in: int = 0
    rows_out: int = 0
    duplicates_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    previous_archive_rows: int = 0
    quarantined: list[dict] = field(default_factory=list)  # {path, reason, moved_to}
    normalised: list[dict] = field(default_factory=list)  # {path, notes}
    quality: dict[str, int] = field(default_factory=dict)
    archive_duplicate_keys: int = 0  # counted on the read-back archive (must be 0)
    written: bool = False
    verified: bool = False
    error: str = ""
    seconds: float = 0.0

    @property
    def anomalies(self) -> int:
        return int(self.quality.get("bad_bars", 0)) + int(self.quality.get("outside_file_date", 0))

    def as_dict(self) -> dict:
        return asdict(self)


def _file_stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _adjacent_duplicates(df: pl.DataFrame) -> int:
    """Repeated keys in a frame sorted by key (a repeat sits next to its twin)."""
    if df.height < 2:
        return 0
    same = (
        (pl.col("timestamp") == pl.col("timestamp").shift(1))
        & (pl.col("symbol") == pl.col("symbol").shift(1))
        & (pl.col("timeframe") == pl.col("timeframe").shift(1))
    )
    return int(df.select(same.fill_null(False).sum()).item() or 0)


def _write_tmp(out: pl.DataFrame, target: Path) -> Path:
    """The archive under a temporary name in its folder, fsynced (stale ones of a crash removed)."""
    remove_stale_tmp(target.parent, target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(target)
    try:
        out.write_parquet(tmp, compression="zstd", compression_level=ARCHIVE_ZSTD_LEVEL, statistics=True)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _finish_verified(
    result: "GroupResult",
    out: pl.DataFrame,
    back: pl.DataFrame | None,
    tmp: Path,
    target: Path,
    sources: list[dict],
    checked: tuple[bool, int, int] | None = None,
) -> None:
    """Compare what was read back from tmp with `out`; only then rename it over the archive and
    write the manifest. Sets result.written/verified/bytes_after/error; raises on I/O errors.

    `checked` = (equal, rows read back, adjacent duplicate keys read back): the comparison already
    made by the caller on what it read back from tmp (a whole batch compared at once)."""
    try:
        if checked is None:
            if back is None:
                back = pl.read_parquet(tmp)
            # duplicate keys counted on what was read back: it is sorted by key, so a repeat is adjacent
            # `out` has one row per key by construction, so equality proves rows and distinct keys match
            checked = (back.height == out.height and back.equals(out), back.height, _adjacent_duplicates(back))
        equal, back_rows, result.archive_duplicate_keys = checked
        if not equal or back_rows != out.height:
            result.error = f"verification failed: archive has {back_rows} rows, deduplicated sources {out.height}"
            tmp.unlink(missing_ok=True)
            return
        size = tmp.stat().st_size
        os.replace(tmp, target)
        result.written = True
        result.bytes_after = size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # after the rename: the file at the archive's name is the one verified
    st = target.stat()
    if st.st_size != result.bytes_after:
        result.error = "verification failed: archive changed during rename"
        return
    result.verified = True
    write_json_atomic(
        {
            "symbol": result.symbol,
            "timeframe": result.timeframe,
            "month": result.month,
            "archive": {"name": target.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "rows": out.height},
            "sources": sources,
            "verified_at": datetime.now(timezone.utc).isoformat(),
        },
        manifest_path(target),
        # its folder fsync makes the archive's rename durable; the manifest's own bytes need
        # none: a manifest lost or torn by a crash only means "not deletable until rerun"
        fsync_file=False,
    )


def _write_verified(result: "GroupResult", out: pl.DataFrame, target: Path, sources: list[dict]) -> None:
    """Write under a temporary name, fsync, read the temporary file back and compare it with the
    deduplicated sources, and only then rename it over the previous archive: a bad write never
    replaces a good archive (which may hold rows of daily files already deleted)."""
    tmp = _write_tmp(out, target)
    _finish_verified(result, out, None, tmp, target, sources)


def _read_group_fast(ordered: list[DailyFile]) -> tuple[pl.DataFrame, list[dict]] | None:
    """All of a group's daily files in one multi-file polars scan (the common case: every file
    readable and in the current schema). None when anything is off: the caller then reads file by
    file, normalising old schemas and quarantining unreadable files.

    Sizes and mtimes are taken before reading: a file rewritten meanwhile no longer matches its
    manifest entry and so is never deleted on the strength of this archive."""
    if not ordered:
        return None
    try:
        stats = [_file_stat(f.path) for f in ordered]
        paths = [str(f.path) for f in ordered]
        by_path = {str(f.path): f.day for f in ordered}
        df = pl.scan_parquet(paths, include_file_paths="_path").collect()
        if list(df.schema.items())[:-1] != _SCHEMA_ITEMS:
            return None
        # the scan keeps file order and row order: each file's rows must be one contiguous run
        runs = df["_path"].rle().struct.unnest()
        run_paths, run_lengths = runs["value"].to_list(), runs["len"].to_list()
        counts = dict(zip(run_paths, run_lengths))
        if len(counts) != len(run_paths) or [p for p in paths if p in counts] != run_paths:
            return None
        lengths = [int(counts.get(p, 0)) for p in paths]
        days = np.array([by_path[p] for p in paths], dtype="datetime64[D]")
        df = df.drop("_path").with_columns(pl.Series("_file_date", np.repeat(days, lengths)).cast(pl.Date))
    except Exception:  # noqa: BLE001 - any doubt: take the careful path
        return None
    sources = [
        {"name": f.path.name, "size": size, "mtime_ns": mtime_ns, "rows": int(counts.get(str(f.path), 0))}
        for f, (size, mtime_ns) in zip(ordered, stats)
    ]
    return df, sources


def consolidate_group(
    symbol: str,
    timeframe: str,
    month: str,
    files: list[DailyFile],
    market_data_dir: Path,
    archive_dir: Path,
    quarantine_dir: Path,
    sessions: MonthSessions,
    dry_run: bool = False,
) -> GroupResult:
    """Merge the existing archive (if any) and the month's daily files of one symbol and timeframe.

    Never raises for bad data: unreadable files are quarantined (unless dry_run), write or
    verification failures are returned in `error`.
    """
    started = time.perf_counter()
    target = archive_path(archive_dir, symbol, timeframe, month)
    result = GroupResult(symbol, timeframe, month, str(target))
    frames: list[pl.DataFrame] = []
    file_dates: list[date | None] = []
    sources: list[dict] = []
    try:
        if target.exists():
            try:
                prev, _ = read_market_file(target, symbol, timeframe)
            except UnreadableFile as exc:
                result.error = f"existing archive unreadable ({exc}); left in place, daily files kept"
                result.seconds = time.perf_counter() - started
                return result
            result.previous_archive_rows = prev.height
            result.bytes_before += target.stat().st_size
            frames.append(prev)
            file_dates.append(None)
        ordered = sorted(files, key=lambda f: (f.day, f.path.name))
        fast = _read_group_fast(ordered)
        if fast is not None:
            combined_fast, sources = fast
            result.files_read = len(sources)
            result.bytes_before += sum(s["size"] for s in sources)
            frames.append(combined_fast)
        for f in ordered if fast is None else ():
            try:
                size, mtime_ns = _file_stat(f.path)
                df, notes = read_market_file(f.path, symbol, timeframe)
            except FileNotFoundError:
                continue  # deleted meanwhile (by an earlier run's cleanup): its rows are in the archive
            except UnreadableFile as exc:
                entry = {"path": str(f.path), "reason": str(exc), "moved_to": ""}
                if not dry_run:
                    try:
                        entry["moved_to"] = str(quarantine_file(f.path, market_data_dir, quarantine_dir, str(exc)))
                    except OSError as move_exc:
                        entry["moved_to"] = f"not moved: {type(move_exc).__name__}: {move_exc.strerror}"
                result.quarantined.append(entry)
                continue
            if notes:
                result.normalised.append({"path": str(f.path), "notes": notes})
            result.files_read += 1
            result.bytes_before += size
            frames.append(df)
            file_dates.append(f.day)
            sources.append({"name": f.path.name, "size": size, "mtime_ns": mtime_ns, "rows": df.height})
        if not frames:
            result.seconds = time.perf_counter() - started
            return result
        if fast is not None:
            if frames[0] is not combined_fast:  # the previous archive comes first (lowest priority)
                frames[0] = frames[0].with_columns(pl.lit(None, pl.Date).alias("_file_date"))
            combined = pl.concat(frames, how="vertical", rechunk=False)
        else:
            lengths = [fr.height for fr in frames]
            combined = pl.concat(frames, how="vertical", rechunk=False)
            days = np.array([d if d is not None else np.datetime64("NaT") for d in file_dates], dtype="datetime64[D]")
            file_date_col = pl.Series("_file_date", np.repeat(days, lengths)).cast(pl.Date)
            combined = combined.with_columns(file_date_col.alias("_file_date"))
        result.rows_in = combined.height - result.previous_archive_rows
        deduped = combined.lazy().unique(subset=KEY, keep="last").sort(KEY).collect()
        result.rows_out = deduped.height
        result.duplicates_removed = combined.height - deduped.height
        result.quality = quality(deduped, timeframe, sessions)
        out = deduped.drop("_file_date")
        del combined, frames, deduped
        if dry_run:
            result.seconds = time.perf_counter() - started
            return result
        _write_verified(result, out, target, sources)
    except Exception as exc:  # noqa: BLE001 - one group's failure never stops the others
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        result.verified = False
    result.seconds = time.perf_counter() - started
    return result


def _scan_runs(paths: list[str]) -> tuple[pl.DataFrame, list[int]] | None:
    """Several parquet files in one scan, with the row count of each (None unless every file is
    readable, in the current schema, and its rows come back as one contiguous run in file order)."""
    df = pl.scan_parquet(paths, include_file_paths="_path").collect()
    if list(df.schema.items())[:-1] != _SCHEMA_ITEMS:
        return None
    runs = df["_path"].rle().struct.unnest()
    run_paths, run_lengths = runs["value"].to_list(), runs["len"].to_list()
    counts = dict(zip(run_paths, run_lengths))
    if len(counts) != len(run_paths) or [p for p in paths if p in counts] != run_paths:
        return None
    return df.drop("_path"), [int(counts.get(p, 0)) for p in paths]


def _dedup_sorted(combined: pl.DataFrame) -> pl.DataFrame:
    """Last written row per (_group, symbol, timeframe, timestamp), sorted by that key.

    Fast path when every group holds one symbol and timeframe (the normal case): two stable sorts
    (timestamp, then group) keep the writing order among equal keys, so the last row of each run of
    equal (group, timestamp) is the last written. Otherwise a general unique + sort.
    """
    ordered = combined.lazy().sort("timestamp", maintain_order=True).sort("_group", maintain_order=True).collect()
    groups = ordered["_group"]
    single = (
        ordered.height == 0
        or (ordered["timeframe"].n_unique() == 1 and bool((ordered["symbol"].rle_id() == groups.rle_id()).all()))
    )
    if single:
        last_of_run = (
            (pl.col("timestamp") != pl.col("timestamp").shift(-1)) | (pl.col("_group") != pl.col("_group").shift(-1))
        ).fill_null(True)
        return ordered.filter(last_of_run)
    return combined.lazy().unique(subset=["_group", *KEY], keep="last").sort(["_group", *KEY]).collect()


def consolidate_batch(
    items: list[tuple[str, str, list[DailyFile]]],
    month: str,
    market_data_dir: Path,
    archive_dir: Path,
    quarantine_dir: Path,
    sessions: MonthSessions,
    dry_run: bool = False,
) -> list[GroupResult]:
    """Several (symbol, timeframe) groups of one timeframe consolidated together.

    The common case (every file readable and in the current schema) reads all the batch's daily
    files in one scan and its previous archives in another, deduplicates, sorts and checks them in
    one query each, then writes and verifies each group's archive on its own. Anything unusual
    (an unreadable file, an old schema, a file vanishing) sends the whole batch to the careful
    per-group path, which quarantines and normalises. Same results either way; memory is bounded
    by the batch, never by the data set.
    """
    def careful() -> list[GroupResult]:
        return [
            consolidate_group(sym, tf, month, files, market_data_dir, archive_dir, quarantine_dir, sessions, dry_run)
            for sym, tf, files in items
        ]

    if len(items) < 2 or len({tf for _, tf, _ in items}) != 1:
        return careful()
    started = time.perf_counter()
    timeframe = items[0][1]
    try:
        ordered = [sorted(files, key=lambda f: (f.day, f.path.name)) for _, _, files in items]
        paths = [str(f.path) for files in ordered for f in files]
        stats = [_file_stat(f.path) for files in ordered for f in files]
        group_of_file = np.repeat(np.arange(len(items)), [len(files) for files in ordered])
        days = np.array([f.day for files in ordered for f in files], dtype="datetime64[D]")
        targets = [archive_path(archive_dir, sym, tf, month) for sym, tf, _ in items]
        with_archive = [i for i, t in enumerate(targets) if t.exists()]
        scanned = _scan_runs(paths)
        if scanned is None:
            return careful()
        daily, lengths = scanned
        daily = daily.with_columns(
            pl.Series("_file_date", np.repeat(days, lengths)).cast(pl.Date),
            pl.Series("_group", np.repeat(group_of_file, lengths)).cast(pl.Int32),
        )
        frames = [daily]
        prev_rows = [0] * len(items)
        prev_bytes = [0] * len(items)
        if with_archive:
            arch_paths = [str(targets[i]) for i in with_archive]
            scanned = _scan_runs(arch_paths)
            if scanned is None:
                return careful()  # the careful path reports an unreadable archive per group
            arch, arch_lengths = scanned
            for i, n in zip(with_archive, arch_lengths):
                prev_rows[i] = n
                prev_bytes[i] = targets[i].stat().st_size
            arch = arch.with_columns(
                pl.lit(None, pl.Date).alias("_file_date"),
                pl.Series("_group", np.repeat(np.array(with_archive), arch_lengths)).cast(pl.Int32),
            )
            frames.insert(0, arch)  # the previous archive first: lowest priority
        combined = pl.concat(frames, how="vertical", rechunk=False)
        deduped = _dedup_sorted(combined)
        per_day = _per_day_counts(deduped.lazy(), timeframe, sessions, by=["_group"]).collect()
    except FileNotFoundError:
        return careful()
    except Exception:  # noqa: BLE001 - any doubt: the careful path, which reports per group
        return careful()
    prepare_seconds = time.perf_counter() - started
    rows_by_group: dict[int, list[dict]] = {}
    for row in per_day.to_dicts():
        rows_by_group.setdefault(row["_group"], []).append(row)
    expected_days = _expected_by_day(timeframe, sessions)
    out_all = deduped.drop("_file_date", "_group")
    group_ids = deduped["_group"].to_numpy()
    del deduped, combined, frames, daily, per_day
    # each group's rows are one contiguous run of out_all (sorted by group first)
    present = np.unique(group_ids) if len(group_ids) else np.array([], dtype=np.int32)
    first = np.searchsorted(group_ids, present, side="left")
    last = np.searchsorted(group_ids, present, side="right")
    span = {int(g): (int(a), int(b - a)) for g, a, b in zip(present, first, last)}
    del group_ids
    results = []
    offset = 0
    to_write = []  # (result, out, sources, seconds)
    for i, ((sym, tf, _), files) in enumerate(zip(items, ordered)):
        t0 = time.perf_counter()
        n_files = len(files)
        file_lengths = lengths[offset:offset + n_files]
        file_stats = stats[offset:offset + n_files]
        offset += n_files
        result = GroupResult(sym, tf, month, str(targets[i]))
        result.files_read = n_files
        result.rows_in = sum(file_lengths)
        result.previous_archive_rows = prev_rows[i]
        result.bytes_before = sum(st[0] for st in file_stats) + prev_bytes[i]
        a, n = span.get(i, (0, 0))
        out = out_all.slice(a, n)
        result.rows_out = out.height
        result.duplicates_removed = result.rows_in + prev_rows[i] - out.height
        result.quality = _quality_from_rows(rows_by_group.get(i, []), tf, expected_days)
        sources = [
            {"name": f.path.name, "size": size, "mtime_ns": mtime_ns, "rows": n}
            for f, (size, mtime_ns), n in zip(files, file_stats, file_lengths)
        ]
        results.append(result)
        if dry_run:
            result.seconds = prepare_seconds / len(items) + time.perf_counter() - t0
            continue
        to_write.append((result, out, sources, time.perf_counter() - t0))

    def write(job):
        result, out, sources, spent = job
        t0 = time.perf_counter()
        try:
            return (result, out, _write_tmp(out, Path(result.archive)), sources, spent + time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - one group's failure never stops the others
            result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            return None

    # the batch's archives written (and fsynced) a few at a time: writes and fsyncs release the GIL;
    # memory is unchanged (the batch is already in memory)
    if len(to_write) > 1 and WRITE_THREADS > 1:
        with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="market-data-write") as pool:
            pending = [p for p in pool.map(write, to_write) if p is not None]
    else:
        pending = [p for p in map(write, to_write) if p is not None]
    del to_write
    if pending:
        # read every temporary archive of the batch back in one scan and compare it with the
        # deduplicated sources in one comparison; any doubt: group by group
        t0 = time.perf_counter()
        checks: list[tuple[bool, int, int] | None] = [None] * len(pending)
        try:
            scanned = _scan_runs([str(p[2]) for p in pending])
            if scanned is not None:
                frame, back_lengths = scanned
                expected_lengths = [p[1].height for p in pending]
                starts = np.concatenate([[0], np.cumsum(back_lengths)[:-1]]).astype(np.int64)
                # duplicate keys counted on what was read back (sorted by key: a repeat is adjacent),
                # never across two archives
                same = (
                    (pl.col("timestamp") == pl.col("timestamp").shift(1))
                    & (pl.col("symbol") == pl.col("symbol").shift(1))
                    & (pl.col("timeframe") == pl.col("timeframe").shift(1))
                ).fill_null(False)
                flags = frame.select(same).to_series().to_numpy().astype(np.int64)
                nonempty = [k for k, n in enumerate(back_lengths) if n]
                flags[starts[nonempty]] = 0
                dups = [0] * len(pending)
                if len(flags):
                    sums = np.add.reduceat(flags, starts[nonempty])
                    for k, v in zip(nonempty, sums):
                        dups[k] = int(v)
                if back_lengths == expected_lengths:
                    expected = pl.concat([p[1] for p in pending], how="vertical", rechunk=False)
                    if frame.equals(expected):
                        checks = [(True, n, d) for n, d in zip(back_lengths, dups)]
                if checks[0] is None:  # something differs: find which, group by group
                    checks = [
                        (n == p[1].height and frame.slice(int(a), int(n)).equals(p[1]), int(n), d)
                        for p, a, n, d in zip(pending, starts, back_lengths, dups)
                    ]
        except Exception:  # noqa: BLE001
            checks = [None] * len(pending)
        share = (time.perf_counter() - t0) / len(pending)

        def finish(job):
            (result, out, tmp, sources, spent), check = job
            t1 = time.perf_counter()
            try:
                _finish_verified(result, out, None, tmp, Path(result.archive), sources, check)
            except Exception as exc:  # noqa: BLE001
                result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                result.verified = False
            result.seconds = prepare_seconds / len(items) + spent + share + time.perf_counter() - t1

        if len(pending) > 1 and WRITE_THREADS > 1:
            with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="market-data-finish") as pool:
                list(pool.map(finish, zip(pending, checks)))
        else:
            for job in zip(pending, checks):
                finish(job)
    return results


@dataclass
class MonthResult:
    month: str
    groups: list[GroupResult]
    seconds: float
    dry_run: bool
    misnamed: list[dict] = field(default_factory=list)  # {path, reason, moved_to}: not daily files, quarantined
    stale_temporaries: list[str] = field(default_factory=list)  # crashed writers' files removed (or, dry run, found)

    def total(self, name: str) -> int:
        return sum(int(getattr(g, name)) for g in self.groups)

    def quality_total(self, name: str) -> int:
        return sum(int(g.quality.get(name, 0)) for g in self.groups)

    @property
    def failed(self) -> list[GroupResult]:
        return [g for g in self.groups if g.error]

    @property
    def quarantined(self) -> list[dict]:
        return [q for g in self.groups for q in g.quarantined] + self.misnamed

    def summary(self) -> dict:
        before, after = self.total("bytes_before"), self.total("bytes_after")
        out = {
            "month": self.month,
            "dry_run": self.dry_run,
            "groups": len(self.groups),
            "archives_written": sum(1 for g in self.groups if g.written),
            "archives_verified": sum(1 for g in self.groups if g.verified),
            "groups_failed": len(self.failed),
            "files_read": self.total("files_read"),
            "rows_in": self.total("rows_in"),
            "rows_out": self.total("rows_out"),
            "duplicates_removed": self.total("duplicates_removed"),
            "files_quarantined": len(self.quarantined),
            "files_misnamed": len(self.misnamed),
            "stale_temporaries_removed": 0 if self.dry_run else len(self.stale_temporaries),
            "files_normalised": sum(len(g.normalised) for g in self.groups),
            "bytes_before": before,
            "bytes_after": after,
            "compression_ratio": round(before / after, 3) if after else 0.0,
            "seconds": round(self.seconds, 3),
        }
        for name in (*ANOMALIES, "bad_bars", "missing_days", "missing_bars", "expected_bars"):
            out[name] = self.quality_total(name)
        return out

    def worst(self, limit: int = 10) -> list[dict]:
        rows = []
        for g in self.groups:
            score = g.anomalies + g.duplicates_removed + 100 * len(g.quarantined) + g.quality.get("missing_bars", 0) + (1000 if g.error else 0)
            if score:
                rows.append(
                    {
                        "symbol": g.symbol,
                        "timeframe": g.timeframe,
                        "rows_out": g.rows_out,
                        "duplicates": g.duplicates_removed,
                        "bad_bars": g.quality.get("bad_bars", 0),
                        "outside_file_date": g.quality.get("outside_file_date", 0),
                        "missing_days": g.quality.get("missing_days", 0),
                        "missing_bars": g.quality.get("missing_bars", 0),
                        "quarantined": len(g.quarantined),
                        "error": g.error,
                        "_score": score,
                    }
                )
        rows.sort(key=lambda r: (-r["_score"], r["symbol"], r["timeframe"]))
        for r in rows:
            r.pop("_score")
        return rows[:limit]


def consolidate_month(
    market_data_dir: str | Path,
    month: str,
    archive_dir: str | Path | None = None,
    quarantine_dir: str | Path | None = None,
    max_workers: int = 4,
    dry_run: bool = False,
    as_of: datetime | None = None,
    calendar_name: str = "XNYS",
    batch_groups: int = 16,
) -> MonthResult:
    """Consolidate every (symbol, timeframe) of a month: batches of up to batch_groups symbol-months,
    max_workers batches at a time.

    Memory is bounded by max_workers x batch_groups symbol-months (batch_groups=1: one symbol-month
    per worker), never by the size of the data set: results carry counts, never frames.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    market_data_dir = Path(market_data_dir)
    archive_dir = Path(archive_dir) if archive_dir else archive_dir_for(market_data_dir)
    quarantine_dir = Path(quarantine_dir) if quarantine_dir else quarantine_dir_for(market_data_dir)
    sessions = month_sessions(month, as_of, calendar_name)
    stale = find_stale_temporaries(archive_dir, month)
    if not dry_run:
        for path in stale:
            path.unlink(missing_ok=True)
    groups, misnamed = scan_daily_files(market_data_dir, month)
    misnamed_report = [quarantine_misnamed(entry, market_data_dir, quarantine_dir, dry_run) for entry in misnamed]
    batches = plan_batches(groups, max_workers, batch_groups)

    def run(batch):
        return consolidate_batch(batch, month, market_data_dir, archive_dir, quarantine_dir, sessions, dry_run)

    if max_workers <= 1 or len(batches) <= 1:
        results = [r for batch in batches for r in run(batch)]
    else:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="market-data") as pool:
            results = [r for rs in pool.map(run, batches) for r in rs]
    return MonthResult(month, results, time.perf_counter() - started, dry_run, misnamed_report, [str(p) for p in stale])


def quarantine_misnamed(entry: MisnamedEntry, market_data_dir: Path, quarantine_dir: Path, dry_run: bool) -> dict:
    """Move an entry that is not a daily file out of the dated layout (a link moved as a link)."""
    report = {"path": str(entry.path), "reason": entry.reason, "moved_to": ""}
    if not dry_run:
        try:
            report["moved_to"] = str(quarantine_file(entry.path, market_data_dir, quarantine_dir, entry.reason))
        except OSError as exc:
            report["moved_to"] = f"not moved: {type(exc).__name__}: {exc.strerror}"
    return report


def plan_batches(
    groups: dict[tuple[str, str], list[DailyFile]], max_workers: int = 4, batch_groups: int = 16
) -> list[list[tuple[str, str, list[DailyFile]]]]:
    """Groups cut into batches of one timeframe, at most batch_groups symbol-months each, small
    enough that every worker gets several batches."""
    by_tf: dict[str, list] = {}
    for (sym, tf), files in sorted(groups.items()):
        by_tf.setdefault(tf, []).append((sym, tf, files))
    total = sum(len(v) for v in by_tf.values())
    size = max(1, min(batch_groups, math.ceil(total / max(1, 2 * max_workers))))
    return [items[i:i + size] for items in by_tf.values() for i in range(0, len(items), size)]


# ----------------------------------------------------------------------------------------------
# Which daily files may be deleted
# ----------------------------------------------------------------------------------------------
def _load_manifest(archive: Path) -> dict | None:
    try:
        return json.loads(manifest_path(archive).read_text())
    except (OSError, ValueError):
        return None


def archived_daily_files(
    market_data_dir: str | Path,
    archive_dir: str | Path | None = None,
    months: Iterable[str] | None = None,
    verify: bool = True,
) -> set[Path]:
    """Daily files whose rows are verified present in a written, verified monthly archive.

    A daily file qualifies only when all of these hold:
      - the archive {archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.parquet of its month exists and
        its manifest (written only after the archive was read back and found equal to its
        deduplicated sources) records the archive's current size and mtime;
      - the manifest lists the daily file with its current size and mtime (a file rewritten or
        appended to since consolidation does not qualify until the month is consolidated again);
      - with verify=True (default): the archive reads back, and every (symbol, timeframe,
        timestamp) key of the daily file is present in it (the daily file is re-read now).
    Unreadable files, missing manifests and any doubt mean "not archived". No retention is applied:
    callers decide age (see expired_archived_daily_files). Never raises for bad files.
    """
    market_data_dir = Path(market_data_dir)
    archive_dir = Path(archive_dir) if archive_dir else archive_dir_for(market_data_dir)
    wanted = set(months) if months is not None else None
    safe: set[Path] = set()
    for (symbol, timeframe, month), archive in sorted(discover_archives(archive_dir).items()):
        if wanted is not None and month not in wanted:
            continue
        manifest = _load_manifest(archive)
        if not manifest or manifest.get("symbol") != symbol or manifest.get("timeframe") != timeframe or manifest.get("month") != month:
            continue
        try:
            size, mtime_ns = _file_stat(archive)
        except OSError:
            continue
        meta = manifest.get("archive", {})
        if meta.get("size") != size or meta.get("mtime_ns") != mtime_ns:
            continue
        folder = market_data_dir / symbol / timeframe
        candidates = []
        for src in manifest.get("sources", []):
            # a manifest is read from disk: only a real day of its own month, in its own folder
            name = str(src.get("name", ""))
            day = parse_day_name(name)
            if day is None or day.isoformat()[:7] != month:
                continue
            path = folder / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode) or _file_stat(path) != (src.get("size"), src.get("mtime_ns")):
                    continue
            except OSError:
                continue
            candidates.append(path)
        if not candidates:
            continue
        if not verify:
            safe.update(candidates)
            continue
        try:
            keys = pl.read_parquet(archive, columns=KEY)
            if keys.height != meta.get("rows"):
                continue
        except Exception:  # noqa: BLE001
            continue
        for path in candidates:
            try:
                daily, _ = read_market_file(path, symbol, timeframe)
            except (UnreadableFile, OSError):
                continue
            daily_keys = daily.select(KEY).unique()
            if daily_keys.join(keys, on=KEY, how="anti").height == 0:
                safe.add(path)
    return safe


def file_day(path: Path) -> date | None:
    return parse_day_name(path.name)


def is_expired(day: date, today: date, retention_days: int) -> bool:
    """Strictly older than retention: a file exactly retention_days old is kept."""
    return (today - day).days > retention_days


def expired_archived_daily_files(
    market_data_dir: str | Path,
    archive_dir: str | Path | None,
    retention_days: int,
    today: date,
    months: Iterable[str] | None = None,
    verify: bool = True,
) -> list[Path]:
    """archived_daily_files restricted to files whose trading day is older than retention_days."""
    files = archived_daily_files(market_data_dir, archive_dir, months, verify)
    return sorted(p for p in files if (d := file_day(p)) is not None and is_expired(d, today, retention_days))


@dataclass
class CleanupResult:
    planned: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # changed since archived: not an error
    failed: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems


def delete_archived(files: list[Path], market_data_dir: Path, archive_dir: Path, dry_run: bool = False) -> CleanupResult:
    """Delete the given daily files (a plan from expired_archived_daily_files), then verify: each
    deleted file is gone, each archive covering them still reads back with its manifest's rows,
    and every daily file not planned is still there."""
    result = CleanupResult(planned=[str(p) for p in files])
    if dry_run or not files:
        return result
    planned = set(files)
    before = {p for group in discover_daily_files(market_data_dir).values() for p in (f.path for f in group)}
    touched_archives = set()
    for path in files:
        sym, tf = path.parent.parent.name, path.parent.name
        day = file_day(path)
        archive = archive_path(archive_dir, sym, tf, day.isoformat()[:7]) if day else None
        manifest = _load_manifest(archive) if archive else None
        src = next((s for s in (manifest or {}).get("sources", []) if s.get("name") == path.name), None)
        try:
            if src is None or _file_stat(path) != (src.get("size"), src.get("mtime_ns")):
                result.kept.append((str(path), "changed since it was archived; kept until the month is consolidated again"))
                continue
            size = path.stat().st_size
            path.unlink()
            result.deleted.append(str(path))
            result.bytes_freed += size
            touched_archives.add(archive)
        except FileNotFoundError:
            continue
        except OSError as exc:
            result.failed.append((str(path), f"{type(exc).__name__}: {exc.strerror}"))
    for folder in {Path(p).parent for p in result.deleted}:
        try:
            _fsync_dir(folder)
        except OSError:
            pass
    for path in result.deleted:
        if os.path.lexists(path):
            result.problems.append(f"deleted file still present: {path}")
    for archive in touched_archives:
        manifest = _load_manifest(archive) or {}
        try:
            rows = pl.scan_parquet(archive).select(pl.len()).collect().item()
            if rows != manifest.get("archive", {}).get("rows"):
                result.problems.append(f"archive {archive} has {rows} rows, manifest says {manifest.get('archive', {}).get('rows')}")
        except Exception as exc:  # noqa: BLE001
            result.problems.append(f"archive {archive} unreadable after cleanup: {type(exc).__name__}")
    for path in before - planned:
        if not path.exists():
            result.problems.append(f"daily file not planned for deletion disappeared: {path}")
    return result


# ----------------------------------------------------------------------------------------------
# Which months a scheduled run consolidates
# ----------------------------------------------------------------------------------------------
def previous_month(month: str) -> str:
    first, _ = month_bounds(month)
    return (first - timedelta(days=1)).isoformat()[:7]


def month_is_final(month: str, moment: datetime, calendar_name: str = "XNYS") -> bool:
    """A month is final once the session of its last trading day has closed."""
    first, last = month_bounds(month)
    days = trading_days(first, last, calendar_name)
    if not days:
        return moment.date() > last
    return session_bounds(days[-1], calendar_name)[1] <= moment


def months_to_consolidate(moment: datetime, calendar_name: str = "XNYS") -> list[tuple[str, str]]:
    """[(month, 'final' | 'so_far')]: the latest complete month, plus the current month so far when
    it is not complete yet and at least one of its sessions has closed."""
    from zoneinfo import ZoneInfo

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    current = moment.astimezone(ZoneInfo(NY)).date().isoformat()[:7]
    if month_is_final(current, moment, calendar_name):
        return [(current, "final")]
    out = [(previous_month(current), "final")]
    if month_sessions(current, moment, calendar_name).counted_days:
        out.append((current, "so_far"))
    return out
