"""Pure consolidation logic on real files in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from trading_maintenance.core.market_data.archive_write import adjacent_duplicates
from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.group import read_group_fast
from trading_maintenance.core.market_data.io import STALE_TMP_SECONDS, UnreadableFile, normalise, remove_stale_tmp
from trading_maintenance.core.market_data.layout import KEY, SCHEMA, archive_dir_for, archive_path, discover_daily_files, manifest_path, quarantine_dir_for
from trading_maintenance.core.market_data.manifest import SourcePlan
from trading_maintenance.core.market_data.months import months_to_consolidate
from trading_maintenance.core.market_data.retention import archived_daily_files, delete_archived, expired_archived_daily_files, is_expired
from trading_maintenance_tests.market_data.synth import collector_file, daily_path, generate, session_bars, write_daily

MAR = "2024-03"
MAR_DAYS = [date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5)]
AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)


def archive_of(mdir, symbol="AAA", tf="1min", month=MAR) -> pl.DataFrame:
    return pl.read_parquet(archive_path(archive_dir_for(mdir), symbol, tf, month))


def expected_union(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Reference: last occurrence per key in writing order, sorted by timestamp (computed in Python)."""
    last: dict = {}
    for frame in frames:
        for row in frame.iter_rows(named=True):
            last[(row["symbol"], row["timeframe"], row["timestamp"])] = row
    rows = sorted(last.values(), key=lambda r: r["timestamp"])
    return pl.DataFrame(rows, schema=SCHEMA)


def test_duplicates_within_and_across_files_last_written_wins(mdir):
    day1, day2 = session_bars("AAA", MAR_DAYS[0]), session_bars("AAA", MAR_DAYS[1])
    # within a file: the collector appended 30 bars again with a corrected close (the later row wins)
    fixed = day1.head(30).with_columns(pl.col("close") + 0.01, pl.col("high") + 0.01)
    f1 = pl.concat([day1, fixed])
    # across files: day 2's file repeats the last 10 bars of day 1 with other volumes
    repeat = day1.tail(10).with_columns(pl.col("volume") + 1)
    f2 = pl.concat([repeat, day2])
    write_daily(mdir, f1, "AAA", "1min", MAR_DAYS[0])
    write_daily(mdir, f2, "AAA", "1min", MAR_DAYS[1])

    result = consolidate_month(mdir, MAR, as_of=AS_OF)
    (group,) = result.groups
    assert not group.error and group.verified
    assert group.rows_in == f1.height + f2.height
    assert group.duplicates_removed == 40
    out = archive_of(mdir)
    assert out.height == day1.height + day2.height
    assert out.n_unique(subset=KEY) == out.height
    assert out.equals(expected_union([f1, f2]))
    # the corrected rows (within) and day 2's copies (across, later file) are the ones kept
    first = out.filter(pl.col("timestamp") == day1["timestamp"][0])
    assert first["close"][0] == pytest.approx(day1["close"][0] + 0.01)
    last = out.filter(pl.col("timestamp") == day1["timestamp"][-1])
    assert last["volume"][0] == day1["volume"][-1] + 1
    assert result.summary()["duplicates_removed"] == 40


def test_unsorted_input_is_sorted_and_order_of_arrival_does_not_matter(mdir, tmp_path):
    frames = [collector_file(session_bars("AAA", d), dup_fraction=0.05, shuffle=True, seed=i) for i, d in enumerate(MAR_DAYS)]
    assert not frames[0]["timestamp"].is_sorted()
    order = [2, 0, 1]  # files arrive out of order, with mtimes in that order
    for i in order:
        write_daily(mdir, frames[i], "AAA", "1min", MAR_DAYS[i])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    out = archive_of(mdir)
    assert out["timestamp"].is_sorted()
    assert out.equals(expected_union(frames))

    other = tmp_path / "other" / "parquet" / "market_data"
    for i in [1, 2, 0]:
        write_daily(other, frames[i], "AAA", "1min", MAR_DAYS[i])
    consolidate_month(other, MAR, as_of=AS_OF)
    assert archive_of(other).equals(out)


def test_late_arriving_file_is_merged_even_after_daily_files_were_deleted(mdir, tmp_path):
    frames = {d: collector_file(session_bars("AAA", d), 0.02, True, seed=d.day) for d in MAR_DAYS}
    write_daily(mdir, frames[MAR_DAYS[0]], "AAA", "1min", MAR_DAYS[0])
    write_daily(mdir, frames[MAR_DAYS[2]], "AAA", "1min", MAR_DAYS[2])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    assert archive_of(mdir).height == 2 * 390
    # cleanup removed the archived files; then the missing day arrives late, with a repeated bar
    for d in (MAR_DAYS[0], MAR_DAYS[2]):
        daily_path(mdir, "AAA", "1min", d).unlink()
    late = pl.concat([frames[MAR_DAYS[1]], frames[MAR_DAYS[2]].head(3)])
    write_daily(mdir, late, "AAA", "1min", MAR_DAYS[1])
    result = consolidate_month(mdir, MAR, as_of=AS_OF)
    (group,) = result.groups
    assert group.verified and group.previous_archive_rows == 780
    out = archive_of(mdir)
    assert out.height == 3 * 390
    # same result as consolidating all three files at once in a fresh root
    fresh = tmp_path / "fresh" / "parquet" / "market_data"
    write_daily(fresh, frames[MAR_DAYS[0]], "AAA", "1min", MAR_DAYS[0])
    write_daily(fresh, late, "AAA", "1min", MAR_DAYS[1])
    write_daily(fresh, frames[MAR_DAYS[2]], "AAA", "1min", MAR_DAYS[2])
    consolidate_month(fresh, MAR, as_of=AS_OF)
    assert archive_of(fresh).select(KEY).equals(out.select(KEY))


def test_old_schema_file_is_normalised(mdir):
    new = session_bars("AAA", MAR_DAYS[1])
    old = (
        session_bars("AAA", MAR_DAYS[0])
        .drop("asset_type")  # written before the column was added
        .with_columns(
            pl.col("timestamp").dt.replace_time_zone(None).dt.cast_time_unit("ns"),  # ns, no zone
            pl.col("volume").cast(pl.Float64),
        )
    )
    write_daily(mdir, old, "AAA", "1min", MAR_DAYS[0])
    write_daily(mdir, new, "AAA", "1min", MAR_DAYS[1])
    result = consolidate_month(mdir, MAR, as_of=AS_OF)
    (group,) = result.groups
    assert group.verified and not group.quarantined
    assert len(group.normalised) == 1 and "asset_type" in " ".join(group.normalised[0]["notes"])
    out = archive_of(mdir)
    assert out.schema == SCHEMA
    assert out.height == 780
    day0 = out.filter(pl.col("timestamp") < new["timestamp"][0])
    assert day0["asset_type"].null_count() == 390  # not invented
    assert day0["timestamp"].to_list() == session_bars("AAA", MAR_DAYS[0])["timestamp"].to_list()


def test_normalise_rejects_a_file_without_prices():
    df = pl.DataFrame({"timestamp": [datetime(2024, 3, 1, 15, tzinfo=timezone.utc)], "close": [1.0]})
    with pytest.raises(UnreadableFile, match="open"):
        normalise(df, "AAA", "1min")


def test_truncated_file_is_quarantined_and_others_are_done(mdir):
    generate(mdir, ["AAA", "BBB"], MAR_DAYS[0], MAR_DAYS[-1], dup_fraction=0.01)
    bad = daily_path(mdir, "AAA", "1min", MAR_DAYS[1])
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated mid-write
    result = consolidate_month(mdir, MAR, as_of=AS_OF)
    summary = result.summary()
    assert summary["files_quarantined"] == 1 and summary["groups_failed"] == 0
    (q,) = result.quarantined
    assert q["path"] == str(bad) and "unreadable" in q["reason"]
    assert not bad.exists()
    moved = quarantine_dir_for(mdir) / "AAA" / "1min" / bad.name
    assert moved.exists() and moved.read_bytes() == data[: len(data) // 2]
    assert "unreadable parquet" in moved.with_name(moved.name + ".reason.txt").read_text()
    assert archive_of(mdir, "AAA").height == 2 * 390
    assert archive_of(mdir, "BBB").height == 3 * 390
    # the quarantined file is not listed in the manifest, so it can never be "archived"
    manifest = json.loads(manifest_path(archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)).read_text())
    assert bad.name not in {s["name"] for s in manifest["sources"]}


def test_dry_run_reports_without_touching_anything(mdir):
    generate(mdir, ["AAA"], MAR_DAYS[0], MAR_DAYS[-1], dup_fraction=0.02)
    bad = daily_path(mdir, "AAA", "1min", MAR_DAYS[0])
    bad.write_bytes(b"PAR1 not really")
    result = consolidate_month(mdir, MAR, dry_run=True, as_of=AS_OF)
    s = result.summary()
    assert s["files_quarantined"] == 1 and s["rows_out"] == 2 * 390 and s["archives_written"] == 0
    assert bad.exists()
    assert not archive_dir_for(mdir).exists()


def test_holiday_and_early_close_coverage(mdir):
    # November 2024: Thanksgiving (Thu 28th) closed, Fri 29th closes at 13:00 ET (210 one-minute bars)
    generate(mdir, ["AAA"], date(2024, 11, 1), date(2024, 11, 30), dup_fraction=0.0)
    files = sorted((mdir / "AAA" / "1min").iterdir())
    assert "2024-11-28.parquet" not in {f.name for f in files}
    assert pl.read_parquet(mdir / "AAA" / "1min" / "2024-11-29.parquet").height == 210
    result = consolidate_month(mdir, "2024-11", as_of=AS_OF)
    q = result.groups[0].quality
    assert q["missing_days"] == 0 and q["missing_bars"] == 0 and q["outside_session"] == 0
    assert q["expected_bars"] == 19 * 390 + 210  # 20 sessions: 19 full and the early close

    # a full-length day written for the early close: 180 bars after 13:00 are outside the session, kept
    full = session_bars("AAA", date(2024, 11, 27))
    shifted = full.with_columns(pl.col("timestamp") + timedelta(days=2))
    write_daily(mdir, shifted, "AAA", "1min", date(2024, 11, 29))
    # a bar on the holiday itself
    write_daily(mdir, session_bars("AAA", date(2024, 11, 27)).head(1).with_columns(pl.col("timestamp") + timedelta(days=1)), "AAA", "1min", date(2024, 11, 28))
    result = consolidate_month(mdir, "2024-11", as_of=AS_OF)
    q = result.groups[0].quality
    assert q["outside_session"] == 180 + 1
    assert q["missing_days"] == 0 and q["missing_bars"] == 0
    out = archive_of(mdir, month="2024-11")
    assert out.height == 19 * 390 + 210 + 180 + 1  # nothing dropped: the odd bars are kept and counted


def test_coverage_counts_missing_bars_and_days_when_no_archive(mdir):
    days = [date(2024, 11, 25), date(2024, 11, 26), date(2024, 11, 29)]
    for d in days:
        write_daily(mdir, session_bars("AAA", d), "AAA", "1min", d)
    gapped = session_bars("AAA", date(2024, 11, 27))
    write_daily(mdir, gapped.filter(pl.int_range(pl.len()) % 10 != 0), "AAA", "1min", date(2024, 11, 27))
    as_of = datetime(2024, 11, 30, tzinfo=timezone.utc)
    q = consolidate_month(mdir, "2024-11", as_of=as_of).groups[0].quality
    # 20 trading days closed by Nov 30; files for 4; Nov 27 misses every 10th bar
    assert q["missing_days"] == 20 - 4
    assert q["missing_bars"] == 16 * 390 + 39
    assert q["expected_bars"] == 19 * 390 + 210


def test_sanity_anomalies_counted_never_changed(mdir):
    bars = session_bars("AAA", MAR_DAYS[0])
    bad = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.min_horizontal("open", "close") - 1).otherwise(pl.col("high")).alias("high"),
        pl.when(pl.int_range(pl.len()) == 1).then(pl.max_horizontal("open", "close") + 1).otherwise(pl.col("low")).alias("low"),
        pl.when(pl.int_range(pl.len()) == 2).then(-5).otherwise(pl.col("volume")).alias("volume"),
        pl.when(pl.int_range(pl.len()) == 3).then(0.0).otherwise(pl.col("open")).alias("open"),
    )
    # a tiny float wobble within tolerance is a false positive the check must not flag
    bad = bad.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.max_horizontal("open", "close") * (1 - 1e-9)).otherwise(pl.col("high")).alias("high")
    )
    # a bar from another day in this day's file, and a pre-market bar
    stray = session_bars("AAA", MAR_DAYS[1]).head(1)
    premarket = bars.head(1).with_columns(pl.col("timestamp") - timedelta(minutes=30))
    write_daily(mdir, pl.concat([bad, stray, premarket]), "AAA", "1min", MAR_DAYS[0])
    q = consolidate_month(mdir, MAR, as_of=AS_OF).groups[0].quality
    assert q["high_below_open_close"] == 1  # row 0 (row 4's wobble is within tolerance)
    assert q["low_above_open_close"] == 2  # row 1, and row 3 whose open became 0
    assert q["negative_volume"] == 1
    assert q["non_positive_price"] == 1
    assert q["outside_session"] == 1
    assert q["outside_file_date"] == 1
    out = archive_of(mdir)
    assert out.height == 392
    assert out.filter(pl.col("volume") < 0).height == 1  # kept as written


def test_retention_exactly_at_90_days_is_kept():
    today = date(2025, 6, 30)
    assert not is_expired(today - timedelta(days=90), today, 90)
    assert is_expired(today - timedelta(days=91), today, 90)


def test_expired_archived_daily_files_boundary(mdir):
    today = date(2025, 6, 30)
    d90, d91, d92 = (today - timedelta(days=n) for n in (90, 91, 92))  # Apr 1, Mar 31, Mar 30 2025
    for d in (d90, d91, d92):
        write_daily(mdir, session_bars("AAA", date(2025, 3, 31)).with_columns(pl.col("timestamp") + (d - date(2025, 3, 31))), "AAA", "1min", d)
    consolidate_month(mdir, "2025-03", as_of=AS_OF)
    consolidate_month(mdir, "2025-04", as_of=AS_OF)
    plan = expired_archived_daily_files(mdir, None, 90, today)
    assert [p.name for p in plan] == [f"{d92}.parquet", f"{d91}.parquet"]
    assert set(archived_daily_files(mdir)) == {daily_path(mdir, "AAA", "1min", d) for d in (d90, d91, d92)}


def test_archived_daily_files_refuses_what_is_not_verified(mdir):
    generate(mdir, ["AAA", "BBB"], MAR_DAYS[0], MAR_DAYS[-1])
    assert archived_daily_files(mdir) == set()  # nothing archived yet
    consolidate_month(mdir, MAR, as_of=AS_OF)
    all_files = {f.path for g in discover_daily_files(mdir).values() for f in g}
    assert archived_daily_files(mdir) == all_files
    # a daily file appended to after consolidation is no longer covered
    appended = daily_path(mdir, "AAA", "1min", MAR_DAYS[0])
    extra = pl.concat([pl.read_parquet(appended), session_bars("AAA", MAR_DAYS[0]).head(1).with_columns(pl.col("timestamp") - timedelta(minutes=1))])
    extra.write_parquet(appended)
    # an archive replaced by something else invalidates its manifest
    b_archive = archive_path(archive_dir_for(mdir), "BBB", "1min", MAR)
    pl.read_parquet(b_archive).head(10).write_parquet(b_archive)
    remaining = archived_daily_files(mdir)
    assert remaining == {daily_path(mdir, "AAA", "1min", d) for d in MAR_DAYS[1:]}
    # verify=True re-reads: a key missing from the archive (manifest forged to match) is refused
    a_archive = archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)
    pl.read_parquet(a_archive).filter(pl.col("timestamp") != session_bars("AAA", MAR_DAYS[1])["timestamp"][5]).write_parquet(a_archive)
    mpath = manifest_path(a_archive)
    manifest = json.loads(mpath.read_text())
    st = a_archive.stat()
    manifest["archive"].update(size=st.st_size, mtime_ns=st.st_mtime_ns, rows=pl.read_parquet(a_archive).height)
    mpath.write_text(json.dumps(manifest))
    assert archived_daily_files(mdir) == {daily_path(mdir, "AAA", "1min", MAR_DAYS[2])}
    assert len(archived_daily_files(mdir, verify=False)) == 2


def test_delete_archived_deletes_only_planned_and_verifies(mdir):
    generate(mdir, ["AAA"], MAR_DAYS[0], MAR_DAYS[-1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    plan = sorted(archived_daily_files(mdir))[:2]
    dry = delete_archived(plan, mdir, archive_dir_for(mdir), dry_run=True)
    assert dry.planned == [str(p) for p in plan] and not dry.deleted and all(p.exists() for p in plan)
    outcome = delete_archived(plan, mdir, archive_dir_for(mdir))
    assert outcome.ok and outcome.deleted == [str(p) for p in plan]
    assert not any(p.exists() for p in plan)
    assert daily_path(mdir, "AAA", "1min", MAR_DAYS[2]).exists()
    assert archive_of(mdir).height == 3 * 390


def test_stale_temporary_file_from_a_crash_is_replaced(mdir):
    generate(mdir, ["AAA"], MAR_DAYS[0], MAR_DAYS[0])
    target = archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)
    target.parent.mkdir(parents=True)
    stale = target.with_name(f".{target.name}.99999.tmp")
    stale.write_bytes(b"half an archive")
    os.utime(stale, (0, 0))  # old, whatever process 99999 is now
    consolidate_month(mdir, MAR, as_of=AS_OF)
    assert not stale.exists() and archive_of(mdir).height == 390


def test_months_to_consolidate():
    # Saturday 23:00 ET after the last trading day: the month is final
    sat = datetime(2024, 11, 30, 23, tzinfo=timezone.utc) + timedelta(hours=5)
    assert months_to_consolidate(sat) == [("2024-11", "final")]
    # mid-month: last complete month plus the current month so far
    assert months_to_consolidate(datetime(2024, 5, 5, 3, tzinfo=timezone.utc)) == [("2024-04", "final"), ("2024-05", "so_far")]
    # Saturday 2024-06-01: no session of June has closed yet, May is final
    assert months_to_consolidate(datetime(2024, 6, 2, 3, tzinfo=timezone.utc)) == [("2024-05", "final")]


def test_parallel_and_serial_give_identical_archives(mdir, tmp_path):
    generate(mdir, [f"S{i}" for i in range(4)], MAR_DAYS[0], MAR_DAYS[-1], dup_fraction=0.03)
    consolidate_month(mdir, MAR, max_workers=4, as_of=AS_OF)
    other = tmp_path / "serial" / "parquet" / "market_data"
    generate(other, [f"S{i}" for i in range(4)], MAR_DAYS[0], MAR_DAYS[-1], dup_fraction=0.03)
    consolidate_month(other, MAR, max_workers=1, as_of=AS_OF)
    for i in range(4):
        assert archive_of(mdir, f"S{i}").equals(archive_of(other, f"S{i}"))


def test_fast_multi_file_read_equals_file_by_file_read(mdir):
    generate(mdir, ["AAA"], MAR_DAYS[0], MAR_DAYS[-1], dup_fraction=0.05, shuffle=True)
    files = discover_daily_files(mdir, MAR)[("AAA", "1min")]
    fast, sources = read_group_fast(SourcePlan(files))
    careful = pl.concat([pl.read_parquet(f.path).with_columns(pl.lit(f.day).alias("_file_date")) for f in files])
    assert fast.equals(careful)
    assert [s["rows"] for s in sources] == [pl.read_parquet(f.path).height for f in files]
    # one file in an old schema: the fast path declines, the careful path normalises it
    old = pl.read_parquet(files[1].path).drop("asset_type")
    old.write_parquet(files[1].path)
    assert read_group_fast(SourcePlan(files)) is None
    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups
    assert group.verified and len(group.normalised) == 1 and group.files_read == 3


def test_foreign_rows_stay_in_their_folder_and_are_not_merged(mdir):
    # AAA's file carries a row labelled BBB at the same minute as an AAA bar (a collector mix-up)
    a = session_bars("AAA", MAR_DAYS[0])
    b = session_bars("BBB", MAR_DAYS[0])
    stray = b.tail(5)  # the last minutes, so in AAA's folder BBB sorts after AAA
    write_daily(mdir, pl.concat([a, stray]), "AAA", "1min", MAR_DAYS[0])
    write_daily(mdir, b, "BBB", "1min", MAR_DAYS[0])
    for batch_groups in (16, 1):  # the batched path and the per-group path agree
        result = consolidate_month(mdir, MAR, as_of=AS_OF, batch_groups=batch_groups, max_workers=1)
        assert all(g.verified for g in result.groups)
        out = archive_of(mdir, "AAA")
        assert out.height == 395 and out.n_unique(subset=KEY) == 395
        assert out.filter(pl.col("symbol") == "BBB").height == 5
        assert out.select(KEY).equals(out.select(KEY).sort(KEY))
        assert archive_of(mdir, "BBB").height == 390
        shutil.rmtree(archive_dir_for(mdir))


def test_batched_and_per_group_paths_agree_with_previous_archives(mdir, tmp_path):
    generate(mdir, [f"S{i}" for i in range(5)], MAR_DAYS[0], MAR_DAYS[1], dup_fraction=0.05)
    consolidate_month(mdir, MAR, as_of=AS_OF, batch_groups=16, max_workers=1)
    snapshot = tmp_path / "archives-before"
    shutil.copytree(archive_dir_for(mdir), snapshot)  # copy2: mtimes kept, manifests still match
    generate(mdir, [f"S{i}" for i in range(5)], MAR_DAYS[2], MAR_DAYS[2], dup_fraction=0.05)
    batched = consolidate_month(mdir, MAR, as_of=AS_OF, batch_groups=16, max_workers=1)
    assert all(g.previous_archive_rows == 780 and g.files_read == 1 and g.files_reused == 2 for g in batched.groups)
    first = {i: archive_of(mdir, f"S{i}") for i in range(5)}
    shutil.rmtree(archive_dir_for(mdir))
    shutil.copytree(snapshot, archive_dir_for(mdir))
    single = consolidate_month(mdir, MAR, as_of=AS_OF, batch_groups=1, max_workers=1)
    for i in range(5):
        assert archive_of(mdir, f"S{i}").equals(first[i])
    run_dependent = ("seconds", "bytes_after", "bytes_before", "previous_archive_rows", "duplicates_removed")

    def strip(result):
        return [{k: v for k, v in g.as_dict().items() if k not in run_dependent} for g in result.groups]

    assert strip(batched) == strip(single)


def test_unreadable_previous_archive_is_an_error_and_nothing_is_touched(mdir):
    generate(mdir, ["AAA", "BBB"], MAR_DAYS[0], MAR_DAYS[1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    archive = archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)
    archive.write_bytes(archive.read_bytes()[:100])  # damaged on disk
    result = consolidate_month(mdir, MAR, as_of=AS_OF)
    (failed,) = result.failed
    assert failed.symbol == "AAA" and "existing archive unreadable" in failed.error
    assert len(archive.read_bytes()) == 100  # left in place for a person to look at
    assert all(g.verified for g in result.groups if g.symbol == "BBB")
    # its daily files are no longer "archived": the manifest no longer matches the archive
    assert not any(p.parent.parent.name == "AAA" for p in archived_daily_files(mdir))


def test_adjacent_duplicates_true_and_false_positive():
    bars = session_bars("AAA", MAR_DAYS[0]).head(5)
    assert adjacent_duplicates(bars) == 0
    assert adjacent_duplicates(pl.concat([bars, bars.tail(1)])) == 1
    # same minute, another symbol: not a duplicate key
    other = bars.tail(1).with_columns(pl.lit("BBB").alias("symbol"))
    assert adjacent_duplicates(pl.concat([bars, other])) == 0


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    import subprocess
    import sys
    import time as _time

    folder = tmp_path / "f"
    folder.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine = folder / f".2024-03.parquet.{live.pid}.tmp"
        mine.write_bytes(b"in progress")
        crashed = folder / ".2024-03.parquet.notapid.tmp"
        crashed.write_bytes(b"x")
        assert remove_stale_tmp(folder, "2024-03.parquet") == [crashed]
        assert mine.exists()
        old = _time.time() - 2 * STALE_TMP_SECONDS
        os.utime(mine, (old, old))
        assert remove_stale_tmp(folder, "2024-03.parquet") == [mine]
    finally:
        live.kill()
        live.wait()
