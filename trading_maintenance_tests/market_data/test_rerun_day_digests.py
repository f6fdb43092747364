"""A file delivered again whose rows equal its archive's, day by day, leaves the archive unread and
unwritten (the manifest's day digests); any other change takes the ordinary path and ends in the
archive a full re-read gives."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.day_digest import day_digests, group_day_digests, ny_day_bounds_us
from trading_maintenance.core.market_data.layout import SCHEMA, archive_dir_for, archive_path, manifest_path
from trading_maintenance.core.market_data.manifest import DAY_DIGEST_KEY
from trading_maintenance_tests.market_data.synth import generate, session_bars
from trading_maintenance_tests.market_data.test_incremental import (
    AS_OF,
    DAYS,
    LATE,
    MANY,
    MAR,
    archive,
    deliver_again,
    fresh_consolidation,
    record_opens,
)


@pytest.fixture
def archives_read(monkeypatch, mdir):
    """The symbols whose archives were opened, whichever way."""
    root = str(archive_dir_for(mdir))
    return record_opens(monkeypatch, lambda path: Path(path).relative_to(root).parts[0]
                        if path.startswith(root) and path.endswith(".parquet") else None)


def _manifests(mdir) -> dict[str, dict]:
    return {s: json.loads(manifest_path(archive_path(archive_dir_for(mdir), s, "1min", MAR)).read_text()) for s in MANY}


def _strip_digests(mdir) -> None:
    """The manifests as written before day digests existed (still trusted: the field is optional)."""
    for symbol, manifest in _manifests(mdir).items():
        for day in manifest["days"]:
            day.pop(DAY_DIGEST_KEY, None)
        manifest_path(archive_path(archive_dir_for(mdir), symbol, "1min", MAR)).write_text(json.dumps(manifest))


def _comparable(result) -> list[dict]:
    return [{k: v for k, v in g.as_dict().items() if k != "seconds"} for g in result.groups]


def _without_time(manifests: dict[str, dict]) -> dict[str, dict]:
    return {s: {k: v for k, v in m.items() if k != "verified_at"} for s, m in manifests.items()}


@pytest.mark.parametrize("batch_groups", [16, 1])
def test_a_full_run_records_a_digest_for_every_day_of_every_archive(mdir, batch_groups):
    generate(mdir, MANY, DAYS[0], DAYS[2], dup_fraction=0.05)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1, batch_groups=batch_groups)
    for symbol, manifest in _manifests(mdir).items():
        assert [d["ny_date"] for d in manifest["days"]] == [d.isoformat() for d in DAYS[:3]]
        assert {d["ny_date"]: d[DAY_DIGEST_KEY] for d in manifest["days"]} == day_digests(archive(mdir, symbol))


def test_rows_delivered_again_leave_the_archive_unread_with_what_the_ordinary_path_reports(mdir, tmp_path, archives_read):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    before = {s: archive_path(archive_dir_for(mdir), s, "1min", MAR).read_bytes() for s in MANY}
    deliver_again(mdir, LATE, lambda df: df.sample(fraction=0.5, seed=3))  # half the bars again, shuffled
    ordinary_dir = tmp_path / "ordinary" / "parquet" / "market_data"
    ordinary_dir.parent.mkdir(parents=True)
    shutil.copytree(mdir.parent, ordinary_dir.parent, dirs_exist_ok=True)
    _strip_digests(ordinary_dir)
    archives_read.clear()

    proven = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)

    assert archives_read == []
    ordinary = consolidate_month(ordinary_dir, MAR, as_of=AS_OF, max_workers=1)
    assert _comparable(proven) == [{**g, "archive": g["archive"].replace(str(ordinary_dir.parent.parent), str(mdir.parent.parent))}
                                   for g in _comparable(ordinary)]
    late = [g for g in proven.groups if g.symbol in LATE]
    assert all(g.verified and not g.written and g.files_read == 1 and g.rows_in - g.duplicates_removed == 390 for g in late)
    assert {s: archive_path(archive_dir_for(mdir), s, "1min", MAR).read_bytes() for s in MANY} == before
    proven_manifests, ordinary_manifests = _without_time(_manifests(mdir)), _without_time(_manifests(ordinary_dir))
    for symbol in LATE:  # the same sources and days, each day with its digest again
        assert proven_manifests[symbol]["sources"] == ordinary_manifests[symbol]["sources"]
        assert proven_manifests[symbol]["days"] == ordinary_manifests[symbol]["days"]
    assert all(g.unchanged for g in consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1).groups)


def _one_more_bar(df: pl.DataFrame) -> pl.DataFrame:
    """A bar one second after the day's first (inside its day: a key the archive lacks)."""
    return df.head(1).with_columns(pl.col("timestamp") + timedelta(seconds=1))


def _bar_on_the_next_day(df: pl.DataFrame) -> pl.DataFrame:
    return df.head(1).with_columns(pl.col("timestamp") + timedelta(days=1))


def _open_near_zero(df: pl.DataFrame) -> pl.DataFrame:
    return df.head(1).with_columns(pl.col("open") * 0 + 1e-300)


@pytest.mark.parametrize("change", [
    lambda df: df.head(1).with_columns(pl.col("close") + 0.01),  # a corrected bar
    _one_more_bar,
    _bar_on_the_next_day,
    _open_near_zero,
    lambda df: df.head(1).with_columns(pl.lit("ETF").alias("asset_type")),
])
def test_any_other_change_reads_the_archive_and_ends_as_a_full_reread_would(mdir, tmp_path, archives_read, change):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    deliver_again(mdir, LATE, change)
    archives_read.clear()

    result = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)

    assert sorted(archives_read) == LATE
    assert all(g.written and g.verified and not g.error for g in result.groups if g.symbol in LATE)
    other, fresh = fresh_consolidation(mdir, tmp_path)
    for symbol in LATE:
        fresh_archive = pl.read_parquet(archive_path(archive_dir_for(other), symbol, "1min", MAR))
        assert archive(mdir, symbol).equals(fresh_archive)
    assert [g.quality for g in result.groups] == [g.quality for g in fresh.groups]


def test_a_day_digest_that_does_not_match_is_not_believed(mdir, archives_read):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    target = archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)
    manifest = json.loads(manifest_path(target).read_text())
    manifest["days"][1][DAY_DIGEST_KEY] = "0" * 64  # well formed, wrong: as if the archive's day held other rows
    manifest_path(target).write_text(json.dumps(manifest))
    deliver_again(mdir, ["AAA"], lambda df: df.head(2))
    archives_read.clear()

    result = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)

    assert archives_read == ["AAA"]  # read, compared, found equal and kept
    group = next(g for g in result.groups if g.symbol == "AAA")
    assert group.verified and not group.written
    assert {d["ny_date"]: d[DAY_DIGEST_KEY] for d in json.loads(manifest_path(target).read_text())["days"]} == day_digests(archive(mdir, "AAA"))


@pytest.mark.parametrize("digest", ["not-hex", 7, "A" * 64])
def test_a_malformed_day_digest_makes_the_manifest_untrusted(mdir, digest):
    generate(mdir, ["AAA"], DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    target = archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)
    manifest = json.loads(manifest_path(target).read_text())
    manifest["days"][0][DAY_DIGEST_KEY] = digest
    manifest_path(target).write_text(json.dumps(manifest))

    result = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)

    assert result.groups[0].files_read == 2 and not result.groups[0].unchanged


def _frame(day, **changes) -> pl.DataFrame:
    df = session_bars("AAA", day).select(list(SCHEMA.names())).cast(dict(SCHEMA))
    return df.with_columns(**changes) if changes else df


def test_day_digests_split_at_new_york_midnight_and_refuse_frames_they_cannot_vouch_for():
    day = DAYS[1]
    bars = _frame(day)
    start, end = ny_day_bounds_us(day)
    assert datetime.fromtimestamp(start / 1e6, timezone.utc).hour == 5  # EST: midnight in New York is 05:00 UTC
    late_evening = bars.tail(1).with_columns(pl.lit(datetime.fromtimestamp(end / 1e6 - 60, timezone.utc)).cast(SCHEMA["timestamp"]).alias("timestamp"))
    after_midnight = late_evening.with_columns(pl.col("timestamp") + timedelta(minutes=2))
    digests = day_digests(pl.concat([bars, late_evening, after_midnight]))
    assert sorted(digests) == [day.isoformat(), (day + timedelta(days=1)).isoformat()]
    assert digests[day.isoformat()] != day_digests(bars)[day.isoformat()]  # the evening bar is in its day's digest

    assert day_digests(bars) == day_digests(bars.clone())
    assert day_digests(bars.with_columns(pl.col("close").cast(pl.Float64) * 1.0)) == day_digests(bars)
    assert day_digests(bars.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("volume")).alias("volume"))) == {}
    assert day_digests(bars.reverse()) == {}  # not sorted by time
    assert day_digests(pl.concat([bars, bars.tail(1)])) == {}  # a repeated key
    assert day_digests(bars.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("ETF")).otherwise(pl.col("asset_type")).alias("asset_type"))) == {}
    assert day_digests(bars.with_columns(pl.lit("BBB").alias("symbol"))) != day_digests(bars)
    negative_zero = bars.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(-0.0)).otherwise(pl.col("open")).alias("open"))
    positive_zero = bars.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(0.0)).otherwise(pl.col("open")).alias("open"))
    assert day_digests(negative_zero) != day_digests(positive_zero)  # equal values, other bytes: the ordinary path decides


def _batch(frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, list[int], list[int]]:
    lengths = [f.height for f in frames]
    starts = [sum(lengths[:k]) for k in range(len(frames))]
    return pl.concat(frames), starts, lengths


def test_a_batch_s_digests_are_each_group_s_own():
    first = _frame(DAYS[1])
    second = pl.concat([_frame(DAYS[2]), _frame(DAYS[3])]).with_columns(pl.lit("BBB").alias("symbol"))
    third = _frame(DAYS[0]).with_columns(pl.lit("CCC").alias("symbol"))  # earlier than the group before it: a new group
    frames = [first, second, first.head(0), third]
    assert group_day_digests(*_batch(frames)) == [day_digests(f) for f in frames]
    assert [len(d) for d in group_day_digests(*_batch(frames))] == [1, 2, 0, 1]

    varied = second.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("ETF")).otherwise(pl.col("asset_type")).alias("asset_type"))
    unsorted = third.reverse()
    with_null = first.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("close")).alias("close"))
    for odd in (varied, unsorted, with_null):  # that group has none; the others keep theirs
        frames = [first, odd, third]
        assert group_day_digests(*_batch(frames)) == [day_digests(first), {}, day_digests(third)]


def test_a_batch_that_falls_back_to_the_careful_path_does_not_redo_the_groups_it_kept(mdir, archives_read):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    deliver_again(mdir, ["AAA", "BBB"], lambda df: df.head(2))  # proved already archived
    deliver_again(mdir, ["DDD"], lambda df: df.head(1).with_columns(pl.col("close") + 0.01))
    archive_path(archive_dir_for(mdir), "DDD", "1min", MAR).write_bytes(b"not parquet")  # the batch's archive scan fails
    archives_read.clear()

    result = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)

    groups = {g.symbol: g for g in result.groups}
    assert sorted(g.symbol for g in result.groups) == MANY
    assert all(groups[s].verified and not groups[s].written and groups[s].files_read == 1 for s in ("AAA", "BBB"))
    assert "existing archive unreadable" in groups["DDD"].error
    assert "AAA" not in archives_read and "BBB" not in archives_read and "DDD" in archives_read


def test_a_dry_rerun_of_rows_already_archived_reports_them_and_changes_nothing(mdir):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    deliver_again(mdir, LATE, lambda df: df.head(3))
    archive_folder = archive_dir_for(mdir)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in archive_folder.rglob("*") if p.is_file()}

    dry = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1, dry_run=True)

    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in archive_folder.rglob("*") if p.is_file()} == before
    late = [g for g in dry.groups if g.symbol in LATE]
    assert all(g.files_read == 1 and g.duplicates_removed == 3 and not g.written and not g.verified for g in late)
    again = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)  # the real run still has everything to do
    assert [g.files_read for g in again.groups if g.symbol in LATE] == [1] * len(LATE)
