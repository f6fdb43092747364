"""Re-running a month reads only what changed since its archive was verified, gives the archive a
full re-read would, counts truthfully, and never deletes a file whose bytes changed in place."""

from __future__ import annotations

import builtins
import json
import os
import shutil
from datetime import date, datetime, timezone

import polars as pl
import pytest

from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.layout import archive_dir_for, archive_path, manifest_path
from trading_maintenance.core.market_data.retention import archived_daily_files, delete_archived
from trading_maintenance_tests.market_data.synth import daily_path, generate, session_bars, write_daily

MAR = "2024-03"
DAYS = [date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)
SYMBOLS = ["AAA", "BBB", "CCC"]


def record_opens(monkeypatch, name_of) -> list[str]:
    """name_of(path) of every file opened, whichever way (polars scans and reads, Python's open),
    for which it is not None."""
    opened: list[str] = []

    def wrap(original):
        def wrapper(source, *args, **kwargs):
            for item in source if isinstance(source, (list, tuple)) else [source]:
                name = name_of(str(item))
                if name is not None:
                    opened.append(name)
            return original(source, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(pl, "scan_parquet", wrap(pl.scan_parquet))
    monkeypatch.setattr(pl, "read_parquet", wrap(pl.read_parquet))
    monkeypatch.setattr(builtins, "open", wrap(builtins.open))
    return opened


@pytest.fixture
def reads(monkeypatch, mdir):
    """Every daily file opened, whichever way (polars scans and reads, Python's open)."""
    return record_opens(monkeypatch, lambda path: os.path.relpath(path, mdir) if path.startswith(str(mdir)) else None)


def archive(mdir, symbol: str) -> pl.DataFrame:
    return pl.read_parquet(archive_path(archive_dir_for(mdir), symbol, "1min", MAR))


def fresh_consolidation(mdir, tmp_path):
    """The same daily files consolidated from nothing, in another folder."""
    other = tmp_path / "fresh" / "parquet" / "market_data"
    shutil.copytree(mdir, other)
    return other, consolidate_month(other, MAR, as_of=AS_OF, max_workers=1)


def rewrite_keeping_size_and_mtime(path, change) -> None:
    """The file's bytes changed, its size and modification time as before (a copy tool that keeps times)."""
    st = path.stat()
    df = change(pl.read_parquet(path))
    df.write_parquet(path, compression="uncompressed", statistics=False)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("batch_groups", [16, 1])
def test_a_rerun_after_late_files_reads_only_the_changed_sources(mdir, tmp_path, reads, batch_groups):
    generate(mdir, SYMBOLS, DAYS[0], DAYS[2], dup_fraction=0.03)
    first = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1, batch_groups=batch_groups)
    assert first.summary()["files_read"] == 9
    late = write_daily(mdir, session_bars("AAA", DAYS[3]), "AAA", "1min", DAYS[3])
    changed = daily_path(mdir, "BBB", "1min", DAYS[0])
    write_daily(mdir, session_bars("BBB", DAYS[0], seed=7), "BBB", "1min", DAYS[0])  # rewritten: new size/mtime
    reads.clear()

    again = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1, batch_groups=batch_groups)

    daily_reads = {p for p in reads if "archive" not in p}
    assert daily_reads == {os.path.relpath(late, mdir), os.path.relpath(changed, mdir)}
    summary = again.summary()
    assert (summary["files_read"], summary["files_reused"], summary["archives_unchanged"]) == (2, 8, 1)
    assert summary["rows_reused"] == sum(g.rows_reused for g in again.groups) > 0
    other, fresh = fresh_consolidation(mdir, tmp_path)
    for symbol in SYMBOLS:
        assert archive(mdir, symbol).equals(archive(other, symbol))
    assert {g.symbol: g.quality for g in again.groups} == {g.symbol: g.quality for g in fresh.groups}
    assert summary["rows_out"] == fresh.summary()["rows_out"]


def test_a_late_file_for_an_earlier_day_loses_to_a_later_day_without_rereading_everything(mdir, tmp_path, reads):
    # days 1 and 3 archived; day 2 arrives late carrying a bar stamped on day 3 with other prices:
    # the later day's row must win, exactly as if the files had arrived in date order
    for day in (DAYS[0], DAYS[2]):
        write_daily(mdir, session_bars("AAA", day), "AAA", "1min", day)
    consolidate_month(mdir, MAR, as_of=AS_OF)
    day3_bar = session_bars("AAA", DAYS[2]).head(1)
    stray = day3_bar.with_columns(pl.col("close") * 2)
    write_daily(mdir, pl.concat([session_bars("AAA", DAYS[1]), stray]), "AAA", "1min", DAYS[1])
    reads.clear()

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups

    assert {p for p in reads if "archive" not in p} == {f"AAA/1min/{DAYS[1]}.parquet", f"AAA/1min/{DAYS[2]}.parquet"}
    assert (group.files_read, group.files_reused) == (2, 1)
    row = archive(mdir, "AAA").filter(pl.col("timestamp") == day3_bar["timestamp"][0])
    assert row["close"].to_list() == day3_bar["close"].to_list()
    other, fresh = fresh_consolidation(mdir, tmp_path)
    assert archive(mdir, "AAA").equals(archive(other, "AAA"))
    # the surviving row is day 3's own: no bar outside its file's date
    assert group.quality == fresh.groups[0].quality and group.quality["outside_file_date"] == 0


def test_an_unchanged_month_is_neither_read_nor_written_and_reports_no_duplicates(mdir, reads):
    generate(mdir, SYMBOLS, DAYS[0], DAYS[1], dup_fraction=0.05)
    first = consolidate_month(mdir, MAR, as_of=AS_OF)
    in_files = first.summary()["duplicates_removed"]
    assert in_files > 0
    stamps = {p: p.stat().st_mtime_ns for p in archive_dir_for(mdir).rglob("*") if p.is_file()}
    reads.clear()

    again = consolidate_month(mdir, MAR, as_of=AS_OF)

    assert reads == []
    assert {p: p.stat().st_mtime_ns for p in archive_dir_for(mdir).rglob("*") if p.is_file()} == stamps
    summary = again.summary()
    assert summary["archives_unchanged"] == 3 and summary["archives_written"] == 0 and summary["groups_failed"] == 0
    assert (summary["files_read"], summary["rows_in"], summary["duplicates_removed"], summary["archive_rows_replaced"]) == (0, 0, 0, 0)
    assert summary["rows_out"] == first.summary()["rows_out"] and summary["rows_reused"] == first.summary()["rows_in"]
    assert [g.quality for g in again.groups] == [g.quality for g in first.groups]


def test_rereading_everything_counts_replaced_archive_rows_apart_from_duplicates(mdir):
    generate(mdir, SYMBOLS, DAYS[0], DAYS[1], dup_fraction=0.05)
    first = consolidate_month(mdir, MAR, as_of=AS_OF).summary()
    for manifest in archive_dir_for(mdir).rglob("*.manifest.json"):
        manifest.unlink()  # nothing to trust: every daily file is read again

    again = consolidate_month(mdir, MAR, as_of=AS_OF).summary()

    assert again["files_read"] == first["files_read"] and again["rows_in"] == first["rows_in"]
    assert again["duplicates_removed"] == first["duplicates_removed"] < again["rows_in"]
    assert again["archive_rows_replaced"] == again["rows_out"] == first["rows_out"]


def test_a_dry_rerun_reports_what_it_would_read_and_changes_nothing(mdir):
    generate(mdir, ["AAA"], DAYS[0], DAYS[1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    write_daily(mdir, session_bars("AAA", DAYS[2]), "AAA", "1min", DAYS[2])
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in archive_dir_for(mdir).rglob("*") if p.is_file()}

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF, dry_run=True).groups

    assert (group.files_read, group.files_reused, group.rows_out, group.written) == (1, 2, 3 * 390, False)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in archive_dir_for(mdir).rglob("*") if p.is_file()} == before


def test_a_file_changed_in_place_with_the_same_size_and_mtime_is_never_deleted_and_is_read_again(mdir, reads):
    files = generate(mdir, ["AAA"], DAYS[0], DAYS[1], dup_fraction=0, shuffle=False)
    for path in files:  # uncompressed: a changed price keeps the size
        pl.read_parquet(path).write_parquet(path, compression="uncompressed", statistics=False)
    consolidate_month(mdir, MAR, as_of=AS_OF)
    target = files[0]
    rewrite_keeping_size_and_mtime(target, lambda df: df.with_columns(pl.col("close") + 0.5))

    assert target not in archived_daily_files(mdir)  # the hash is checked before a file is called archived
    unverified_plan = sorted(archived_daily_files(mdir, verify=False))  # size and mtime alone would allow it
    assert target in unverified_plan
    outcome = delete_archived(unverified_plan, mdir, archive_dir_for(mdir))
    assert target.exists() and str(target) not in outcome.deleted
    assert any(path == str(target) and "content changed" in reason for path, reason in outcome.kept)
    assert outcome.deleted == [str(files[1])]
    names = {s["name"] for s in json.loads(manifest_path(archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)).read_text())["sources"]}
    assert target.name not in names  # forgotten: the next run reads it again
    reads.clear()

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups

    assert {p for p in reads if "archive" not in p} == {os.path.relpath(target, mdir)}
    assert group.verified and group.files_read == 1 and group.archive_rows_replaced == 390
    expected = pl.read_parquet(target)["close"].sort()
    assert archive(mdir, "AAA").filter(pl.col("timestamp").dt.date() == DAYS[0])["close"].sort().equals(expected)
    assert target in archived_daily_files(mdir)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m["sources"][0].update(sha256="not a hash"),
        lambda m: m["sources"][0].update(rows="390"),
        lambda m: m["sources"][0].update(name="../../BBB/1min/2024-03-01.parquet"),
        lambda m: m.update(calendar="XLON"),
        lambda m: m["days"].append({"ny_date": "not a date"}),
        lambda m: m["days"][0].update(ny_date=m["days"][0]["ny_date"].replace("-0", "-", 1)),  # 2024-3-01: not ISO
        lambda m: m["sources"][0].update(first_us=True),
        lambda m: m.update(version=1),
    ],
)
def test_a_malformed_manifest_is_not_trusted_and_every_file_is_read(mdir, tamper):
    generate(mdir, ["AAA"], DAYS[0], DAYS[1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    path = manifest_path(archive_path(archive_dir_for(mdir), "AAA", "1min", MAR))
    manifest = json.loads(path.read_text())
    tamper(manifest)
    path.write_text(json.dumps(manifest))

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups

    assert group.verified and (group.files_read, group.files_reused, group.unchanged) == (2, 0, False)
    assert archive(mdir, "AAA").height == 2 * 390


def test_quality_of_sources_not_read_again_is_carried_over(mdir, tmp_path, reads):
    # day 1's file carries a bar stamped on the Saturday after it: outside its file's date
    saturday = session_bars("AAA", DAYS[0]).head(1).with_columns(pl.col("timestamp") + pl.duration(days=1))
    write_daily(mdir, pl.concat([session_bars("AAA", DAYS[0]), saturday]), "AAA", "1min", DAYS[0])
    write_daily(mdir, session_bars("AAA", DAYS[1]), "AAA", "1min", DAYS[1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    write_daily(mdir, session_bars("AAA", DAYS[3]), "AAA", "1min", DAYS[3])
    reads.clear()

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups

    assert {p for p in reads if "archive" not in p} == {f"AAA/1min/{DAYS[3]}.parquet"}
    _, fresh = fresh_consolidation(mdir, tmp_path)
    assert group.quality == fresh.groups[0].quality
    assert group.quality["outside_file_date"] == 1 and group.quality["outside_session"] == 1


MANY = ["AAA", "BBB", "CCC", "DDD", "EEE"]
LATE = ["AAA", "BBB", "DDD", "EEE"]  # four groups re-run: batches of two with one worker


@pytest.fixture
def path_taken(monkeypatch):
    """Consolidate with batch_groups (16: the batch path, 1: the per-group path) and check the
    path the late groups really took."""
    from trading_maintenance.core.market_data import batch

    careful: list[str] = []
    per_group = batch.consolidate_group

    def noting(symbol, *args, **kwargs):
        careful.append(symbol)
        return per_group(symbol, *args, **kwargs)

    monkeypatch.setattr(batch, "consolidate_group", noting)

    def run(mdir, batch_groups):
        careful.clear()
        result = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1, batch_groups=batch_groups)
        assert sorted(careful) == ([] if batch_groups > 1 else LATE)
        return result

    return run


def deliver_again(mdir, symbols, extra) -> dict[str, tuple]:
    """Day 2's file of each symbol written again with extra(frame) rows appended; returns
    (path, rows appended) per symbol."""
    delivered = {}
    for symbol in symbols:
        path = daily_path(mdir, symbol, "1min", DAYS[1])
        df = pl.read_parquet(path)
        appended = extra(df)
        pl.concat([df, appended]).write_parquet(path)
        delivered[symbol] = (path, appended)
    return delivered


@pytest.mark.parametrize("batch_groups", [16, 1])
def test_a_file_delivered_again_with_rows_the_archive_holds_renews_the_manifest_without_rewriting(mdir, reads, path_taken, batch_groups):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    targets = {s: archive_path(archive_dir_for(mdir), s, "1min", MAR) for s in MANY}
    before = {s: (t.stat().st_ino, t.stat().st_mtime_ns, t.read_bytes()) for s, t in targets.items()}
    again = deliver_again(mdir, LATE, lambda df: df.head(3))  # same bars, three of them twice
    reads.clear()

    result = path_taken(mdir, batch_groups)

    assert {p for p in reads if "archive" not in p} == {os.path.relpath(p, mdir) for p, _ in again.values()}
    groups = {g.symbol: g for g in result.groups}
    for symbol, (path, _) in again.items():
        g = groups[symbol]
        assert g.verified and not g.written and not g.error
        assert (g.files_read, g.duplicates_removed, g.rows_out) == (1, 3, 2 * 390)
        t = targets[symbol]
        assert (t.stat().st_ino, t.stat().st_mtime_ns, t.read_bytes()) == before[symbol]
        manifest = json.loads(manifest_path(t).read_text())
        entry = next(s for s in manifest["sources"] if s["name"] == path.name)
        assert entry["size"] == path.stat().st_size
    assert {p for p, _ in again.values()} <= set(archived_daily_files(mdir))  # the renewed manifests vouch for them
    assert groups["CCC"].unchanged
    followup = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1, batch_groups=batch_groups)
    assert all(g.unchanged for g in followup.groups)


@pytest.mark.parametrize("batch_groups", [16, 1])
def test_a_file_delivered_again_with_one_corrected_bar_rewrites_the_archive(mdir, path_taken, batch_groups):
    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    inodes = {s: archive_path(archive_dir_for(mdir), s, "1min", MAR).stat().st_ino for s in LATE}
    again = deliver_again(mdir, LATE, lambda df: df.head(1).with_columns(pl.col("volume") + 1))

    result = path_taken(mdir, batch_groups)

    groups = {g.symbol: g for g in result.groups}
    for symbol, (_, correction) in again.items():
        assert groups[symbol].written and groups[symbol].verified
        assert archive_path(archive_dir_for(mdir), symbol, "1min", MAR).stat().st_ino != inodes[symbol]
        in_archive = archive(mdir, symbol).filter(pl.col("timestamp") == correction["timestamp"][0])
        assert in_archive["volume"].to_list() == correction["volume"].to_list()


@pytest.mark.parametrize("batch_groups", [16, 1])
def test_a_kept_archive_whose_manifest_cannot_be_renewed_fails_alone_and_vouches_for_nothing_new(mdir, monkeypatch, path_taken, batch_groups):
    from trading_maintenance.core.market_data import archive_write

    generate(mdir, MANY, DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    again = deliver_again(mdir, LATE, lambda df: df.head(2))
    renew = archive_write.write_manifest

    def failing_for_aaa(target, symbol, *args, **kwargs):
        if symbol == "AAA":
            raise OSError(28, "No space left on device")
        return renew(target, symbol, *args, **kwargs)

    monkeypatch.setattr(archive_write, "write_manifest", failing_for_aaa)

    result = path_taken(mdir, batch_groups)

    groups = {g.symbol: g for g in result.groups}
    assert "No space left on device" in groups["AAA"].error and not groups["AAA"].verified
    assert all(groups[s].verified and not groups[s].error for s in ("BBB", "DDD", "EEE"))
    assert [g.symbol for g in result.failed] == ["AAA"]
    deletable = set(archived_daily_files(mdir))
    assert again["BBB"][0] in deletable and again["AAA"][0] not in deletable


def test_a_rewritten_archive_is_made_durable_by_a_folder_fsync_and_a_kept_one_needs_none(mdir, monkeypatch):
    from trading_maintenance.core.market_data import io

    generate(mdir, ["AAA", "BBB"], DAYS[0], DAYS[1], dup_fraction=0)
    consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1)
    synced: list[str] = []
    monkeypatch.setattr(io, "_fsync_dir", lambda folder: synced.append(os.fspath(folder)))
    for symbol, change in (("AAA", pl.col("volume")), ("BBB", pl.col("volume") + 1)):  # AAA delivered again, BBB corrected
        path = daily_path(mdir, symbol, "1min", DAYS[1])
        df = pl.read_parquet(path)
        pl.concat([df, df.head(1).with_columns(change)]).write_parquet(path)

    groups = {g.symbol: g for g in consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=1).groups}

    assert not groups["AAA"].written and groups["BBB"].written and groups["AAA"].verified and groups["BBB"].verified
    folders = {s: os.fspath(archive_path(archive_dir_for(mdir), s, "1min", MAR).parent) for s in ("AAA", "BBB")}
    assert folders["BBB"] in synced and folders["AAA"] not in synced


def test_workers_consolidating_while_the_month_is_planned_give_what_one_worker_gives(mdir, tmp_path):
    """With several workers, batches start while later groups are still being planned: the
    archives, counts and quality equal those of one worker, on a first run and on a re-run where
    some groups changed and the rest are unchanged."""
    symbols = [f"S{i:02d}" for i in range(9)]
    generate(mdir, symbols, DAYS[0], DAYS[2], dup_fraction=0.03)
    single = tmp_path / "single" / "parquet" / "market_data"
    shutil.copytree(mdir, single)

    def same(a, b):
        sa, sb = a.summary(), b.summary()
        sa.pop("seconds"), sb.pop("seconds")
        assert sa == sb
        assert [(g.symbol, g.quality, g.rows_out, g.files_read, g.written, g.unchanged, g.error) for g in a.groups] == [
            (g.symbol, g.quality, g.rows_out, g.files_read, g.written, g.unchanged, g.error) for g in b.groups
        ]
        for symbol in symbols:
            assert archive(mdir, symbol).equals(archive(single, symbol))

    same(consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=3, batch_groups=2), consolidate_month(single, MAR, as_of=AS_OF, max_workers=1))
    for root in (mdir, single):  # a late day for three symbols, one of them with a corrected bar
        for symbol in ("S01", "S04", "S07"):
            write_daily(root, session_bars(symbol, DAYS[3], seed=3), symbol, "1min", DAYS[3])
        bars = session_bars("S04", DAYS[0])
        write_daily(root, pl.concat([bars, bars.head(1).with_columns(pl.col("volume") + 1)]), "S04", "1min", DAYS[0])
    again = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=3, batch_groups=2)
    same(again, consolidate_month(single, MAR, as_of=AS_OF, max_workers=1))
    assert again.summary()["archives_unchanged"] == 6
