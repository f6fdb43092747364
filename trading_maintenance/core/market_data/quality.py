"""Bar sanity and calendar coverage of a symbol-timeframe-month.

Bars failing sanity (OHLC, volume, prices, session, file date) are counted, never changed.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from trading_maintenance.core.market_data.layout import DAILY_TIMEFRAMES, INTRADAY_MINUTES
from trading_maintenance.core.market_data.manifest import DAY_COUNTS, DAY_DIGEST_KEY
from trading_maintenance.core.market_data.months import NY, MonthSessions, expected_bars

OHLC_TOLERANCE = 1e-6  # relative: high may sit this far below max(open, close) before it counts
ANOMALIES = ("high_below_open_close", "low_above_open_close", "negative_volume", "non_positive_price", "outside_session", "outside_file_date")
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


_MAX_TABLE_HOURS = 24 * 400  # a month's bars span ~750 hours; a wider span takes the general way


def _with_day_columns(lf: pl.LazyFrame, sessions: pl.DataFrame | None) -> pl.LazyFrame | None:
    """lf with `ny_date` (and with sessions, the day's `session_open` and `session_close`) looked up
    in a table of every UTC hour from the first bar's to the last's, by position: no hash join.
    None when the span is wider than _MAX_TABLE_HOURS, a timestamp is null or out of range, or an
    hour of the span is not on one New York date (then _with_ny_date and a join decide)."""
    hour = pl.col("timestamp").dt.epoch("us") // _HOUR_US
    try:
        lo, hi, nulls = lf.select(hour.min().alias("lo"), hour.max().alias("hi"), pl.col("timestamp").null_count().alias("n")).collect().row(0)
        if lo is None or nulls or hi - lo >= _MAX_TABLE_HOURS:
            return None
        start = pl.from_epoch(pl.col("_hour") * _HOUR_US, time_unit="us").dt.replace_time_zone("UTC")
        end = start + pl.duration(microseconds=_HOUR_US - 1)
        table = pl.DataFrame({"_hour": pl.int_range(lo, hi + 1, eager=True)}).select(
            start.dt.convert_time_zone(NY).dt.date().alias("ny_date"), end.dt.convert_time_zone(NY).dt.date().alias("_end")
        )
    except pl.exceptions.PolarsError:
        return None
    if bool((table["ny_date"] != table["_end"]).any()):
        return None
    columns = {"ny_date": table["ny_date"]}
    if sessions is not None:
        days = table.select("ny_date").join(sessions, on="ny_date", how="left", maintain_order="left")
        columns["session_open"], columns["session_close"] = days["session_open"], days["session_close"]
    position = hour - lo
    return lf.with_columns(*(pl.lit(values).gather(position).alias(name) for name, values in columns.items()))


def per_day_counts(lf: pl.LazyFrame, timeframe: str, sessions: MonthSessions, by: list[str] | None = None) -> pl.LazyFrame:
    """Sanity flags counted per New York day and source file date (and per `by` columns), with the
    rows of each (`_rows`): one pass over the bars. `_file_date` is null for rows of the previous
    archive that no file read this run replaced."""
    tol = OHLC_TOLERANCE
    hi_oc = pl.max_horizontal("open", "close")
    lo_oc = pl.min_horizontal("open", "close")
    intraday = timeframe in INTRADAY_MINUTES
    checks_date = intraday or timeframe in DAILY_TIMEFRAMES
    looked_up = _with_day_columns(lf, sessions.frame if intraday else None)
    if looked_up is not None:
        lf = looked_up
    else:
        lf = _with_ny_date(lf)
        if intraday:
            lf = lf.join(sessions.frame.lazy(), on="ny_date", how="left")
    if intraday:
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
        .group_by([*(by or []), "ny_date", "_file_date"])
        .agg(
            pl.len().alias("_rows"),
            *(pl.col(k).sum() for k in flags),
            (
                (pl.col("ny_date") != pl.col("_file_date")).fill_null(False).sum() if checks_date else pl.lit(0, pl.UInt32)
            ).alias("outside_file_date"),
            pl.any_horizontal(*(pl.col(k) for k in flags)).sum().alias("bad_bars"),
            (~pl.col("outside_session")).sum().alias("_in_session"),
        )
    )


QUALITY_COUNTS = (*ANOMALIES, "bad_bars")


def expected_by_day(timeframe: str, sessions: MonthSessions) -> list[tuple[date, int]]:
    """(day, expected bars) of the counted sessions, for timeframes whose coverage is checked."""
    if not (timeframe in INTRADAY_MINUTES or timeframe in DAILY_TIMEFRAMES):
        return []
    cached = sessions.derived.get(("expected_by_day", timeframe))
    if cached is None:
        counted = set(sessions.counted_days)
        minutes = INTRADAY_MINUTES.get(timeframe)
        cached = sessions.derived[("expected_by_day", timeframe)] = tuple(
            (d, expected_bars(o, c, minutes) if minutes else 1)
            for d, o, c in sessions.frame.iter_rows()
            if d in counted
        )
    return list(cached)


def quality_from_rows(
    rows: list[dict], timeframe: str, expected_days: list[tuple[date, int]], reused_outside_file_date: int = 0
) -> dict[str, int]:
    """Quality totals from per-day rows (per_day_counts, or a manifest's days). Rows of sources not
    read this run carry no file date: their outside_file_date, recorded when they were last read,
    is added."""
    result = {k: sum([int(r.get(k) or 0) for r in rows]) for k in QUALITY_COUNTS}  # a list sums faster than a generator
    result["outside_file_date"] += reused_outside_file_date
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


def day_entries(rows: list[dict], digests: dict[str, str] | None = None) -> list[dict]:
    """Per-day rows summed over source files, as a manifest records them (no file date), each with
    the digest of the archive's rows of that day when `digests` (day_digest.day_digests) has one."""
    days: dict[date, dict] = {}
    for r in rows:
        entry = days.setdefault(r["ny_date"], {k: 0 for k in DAY_COUNTS})
        for k in DAY_COUNTS:
            entry[k] += int(r[k] or 0)
    entries = [{"ny_date": d.isoformat(), **counts} for d, counts in sorted(days.items())]
    if digests:
        for entry in entries:
            digest = digests.get(entry["ny_date"])
            if digest is not None:
                entry[DAY_DIGEST_KEY] = digest
    return entries


def quality_from_manifest_days(days: list[dict], timeframe: str, sessions: MonthSessions, reused_outside_file_date: int = 0) -> dict[str, int]:
    """quality_from_rows of a verified archive's manifest days, their ISO dates compared as they are
    (an unchanged month's hundreds of archives: no copy of each day with a parsed date)."""
    key = ("expected_by_iso_day", timeframe)
    expected = sessions.derived.get(key)
    if expected is None:
        expected = sessions.derived[key] = tuple((d.isoformat(), n) for d, n in expected_by_day(timeframe, sessions))
    return quality_from_rows(days, timeframe, expected, reused_outside_file_date)


def _quality_from_days(per_day: pl.DataFrame, timeframe: str, sessions: MonthSessions) -> dict[str, int]:
    return quality_from_rows(per_day.to_dicts(), timeframe, expected_by_day(timeframe, sessions))


def quality(df: pl.DataFrame, timeframe: str, sessions: MonthSessions) -> dict[str, int]:
    """Sanity counts and calendar coverage of one deduplicated symbol-timeframe-month.

    df carries the contract columns plus `_file_date` (Date, null for rows from an older archive).
    Coverage: trading days closed by sessions' as_of without any in-session bar are missing days;
    intraday sessions expect ceil(session minutes / bar minutes) bars (early closes are shorter).
    """
    return _quality_from_days(per_day_counts(df.lazy(), timeframe, sessions).collect(), timeframe, sessions)

