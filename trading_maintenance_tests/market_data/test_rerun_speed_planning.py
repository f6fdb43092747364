"""Planning a re-run cheaply: one stat per daily file, taken while its folder is listed; a
manifest read once, bounded, and checked field by field. Cheap never means trusting more."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone

import polars as pl
import pytest

from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.layout import DailyFile, archive_dir_for, archive_path, manifest_path, scan_daily_files
from trading_maintenance.core.market_data.manifest import MAX_MANIFEST_BYTES, load_manifest, plan_sources, trusted_manifest
from trading_maintenance_tests.market_data.synth import daily_path, generate

MAR = "2024-03"
DAYS = [date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5)]
AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _archive(mdir):
    return archive_path(archive_dir_for(mdir), "AAA", "1min", MAR)


def test_the_listing_gives_each_daily_file_its_own_stat_and_path(mdir):
    generate(mdir, ["AAA", "BBB"], DAYS[0], DAYS[-1])
    groups, misnamed = scan_daily_files(mdir, MAR)

    assert misnamed == [] and sorted(groups) == [("AAA", "1min"), ("BBB", "1min")]
    for (symbol, timeframe), files in groups.items():
        assert [f.day for f in files] == DAYS
        for f in files:
            st = os.stat(f.path)
            assert f.path == daily_path(mdir, symbol, timeframe, f.day) and f.name == f.path.name
            assert f.listed_stat == (st.st_size, st.st_mtime_ns)
            same = DailyFile(f.path, symbol, timeframe, f.day)
            assert same == f and hash(same) == hash(f) and same.listed_stat is None
            assert DailyFile(f.path, "BBB" if symbol == "AAA" else "AAA", timeframe, f.day) != f


def test_a_file_rewritten_in_place_is_read_again_though_its_folder_did_not_change(mdir):
    """Rewriting a file in place leaves its folder's mtime as it was: each file's own stat decides."""
    generate(mdir, ["AAA"], DAYS[0], DAYS[-1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    late = daily_path(mdir, "AAA", "1min", DAYS[1])
    folder_stat = late.parent.stat()
    df = pl.read_parquet(late)
    corrected = df.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("volume") + 7).otherwise(pl.col("volume")).alias("volume"))
    with open(late, "r+b") as handle:  # in place: same inode, the folder untouched
        corrected.write_parquet(handle)
        handle.truncate()
    os.utime(late.parent, ns=(folder_stat.st_atime_ns, folder_stat.st_mtime_ns))
    assert late.parent.stat().st_mtime_ns == folder_stat.st_mtime_ns

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups

    assert (group.files_read, group.files_reused, group.written, group.verified) == (1, 2, True, True)
    rows = pl.read_parquet(_archive(mdir)).filter(pl.col("timestamp") == corrected["timestamp"][0])
    assert rows["volume"].to_list() == [corrected["volume"][0]]


def test_a_file_changed_after_it_was_listed_is_compared_as_it_was_listed(mdir):
    """The plan compares the stat the listing took: a file changed afterwards is the next run's."""
    generate(mdir, ["AAA"], DAYS[0], DAYS[-1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    groups, _ = scan_daily_files(mdir, MAR)
    files = groups[("AAA", "1min")]
    later = daily_path(mdir, "AAA", "1min", DAYS[0])
    os.utime(later, ns=(1, 1))

    plan = plan_sources(_archive(mdir), files, "AAA", "1min", MAR, "XNYS")
    assert plan.unchanged and len(plan.reused) == 3

    unlisted = [DailyFile(f.path, f.symbol, f.timeframe, f.day) for f in files]  # no listing stat: stat'ed now
    plan = plan_sources(_archive(mdir), unlisted, "AAA", "1min", MAR, "XNYS")
    assert [f.day for f in plan.read] == [DAYS[0]] and len(plan.reused) == 2

    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups
    assert (group.files_read, group.files_reused) == (1, 2)


def test_an_oversized_or_undecodable_manifest_is_not_trusted(mdir):
    generate(mdir, ["AAA"], DAYS[0], DAYS[-1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    path = manifest_path(_archive(mdir))
    good = path.read_bytes()
    assert load_manifest(_archive(mdir)) == json.loads(good)

    path.write_bytes(good[:-1] + b" " * (MAX_MANIFEST_BYTES - len(good) + 1) + b"}")  # valid JSON, one byte over
    assert len(path.read_bytes()) == MAX_MANIFEST_BYTES + 1 and load_manifest(_archive(mdir)) is None
    path.write_bytes(good.replace(b'"AAA"', b'"\xff\xfe"', 1))
    assert load_manifest(_archive(mdir)) is None

    path.write_bytes(good)
    assert trusted_manifest(_archive(mdir), "AAA", "1min", MAR, "XNYS") is not None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: s.update(name="2024-04-01.parquet"), id="another month's file"),
        pytest.param(lambda s: s.update(name="2024-03-1.parquet"), id="not a date"),
        pytest.param(lambda s: s.update(name="2024-03-01.parquet\n"), id="a newline"),
        pytest.param(lambda s: s.update(name=20240301), id="a number for a name"),
        pytest.param(lambda s: s.update(sha256=s["sha256"].upper()), id="upper-case hash"),
        pytest.param(lambda s: s.update(size=True), id="a bool for a size"),
        pytest.param(lambda s: s.update(mtime_ns=-1), id="a negative mtime"),
        pytest.param(lambda s: s.update(outside_file_date=None), id="no outside count"),
        pytest.param(lambda s: s.update(first_us=s["last_us"] + 1), id="first after last"),
        pytest.param(lambda s: s.update(rows=0), id="no rows but a range"),
        pytest.param(lambda s: s.pop("rows"), id="no rows"),
    ],
)
def test_a_source_entry_checked_inline_is_refused_as_before(mdir, tamper):
    generate(mdir, ["AAA"], DAYS[0], DAYS[-1])
    consolidate_month(mdir, MAR, as_of=AS_OF)
    path = manifest_path(_archive(mdir))
    data = json.loads(path.read_text())
    tamper(data["sources"][1])
    path.write_text(json.dumps(data))

    assert trusted_manifest(_archive(mdir), "AAA", "1min", MAR, "XNYS") is None
    (group,) = consolidate_month(mdir, MAR, as_of=AS_OF).groups
    assert group.verified and (group.files_read, group.files_reused) == (3, 0)


@pytest.mark.parametrize(("groups", "workers", "most"), [
    (200, 4, 16), (200, 2, 16), (42, 4, 16), (10, 4, 16), (9, 4, 16), (5, 2, 16), (3, 4, 16), (1, 4, 16), (37, 1, 16),
    (9, 4, 1), (9, 4, 2), (200, 4, 3),
])
def test_the_groups_to_read_are_cut_into_even_batches_of_one_timeframe(groups, workers, most):
    from trading_maintenance.core.market_data.consolidate import plan_batches
    from trading_maintenance.core.market_data.manifest import SourcePlan

    plans = {(f"S{i:03d}", tf): SourcePlan([]) for i in range(groups) for tf in ("1min", "1day")}
    batches = plan_batches(plans, max_workers=workers, batch_groups=most)

    assert sorted((sym, tf) for batch in batches for sym, tf, _ in batch) == sorted(plans)  # each group once
    assert all(len({item[1] for item in b}) == 1 for b in batches)  # one timeframe per batch
    for tf in ("1min", "1day"):
        sizes = [len(b) for b in batches if b[0][1] == tf]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= most  # the memory bound holds
        if any(groups // count >= 2 and -(-groups // count) <= most for count in range(1, groups + 1)):
            assert min(sizes) >= 2  # two or more groups in every batch where the bound allows it
        if groups >= 2 * workers and most == 16:  # and no worker waits on a last batch alone
            assert len(sizes) % workers == 0


def test_a_month_is_planned_and_consolidated_with_the_collector_paused_and_leaves_it_on(mdir, monkeypatch):
    import gc

    import trading_maintenance.core.market_data.consolidate as consolidate_module

    generate(mdir, ["AAA", "BBB"], DAYS[0], DAYS[-1])
    seen = []
    real_plan, real_batch = consolidate_module.plan_sources, consolidate_module.consolidate_batch
    monkeypatch.setattr(consolidate_module, "plan_sources", lambda *a, **k: (seen.append(gc.isenabled()), real_plan(*a, **k))[1])
    monkeypatch.setattr(consolidate_module, "consolidate_batch", lambda *a, **k: (seen.append(gc.isenabled()), real_batch(*a, **k))[1])
    gc.enable()
    try:
        result = consolidate_month(mdir, MAR, as_of=AS_OF, max_workers=2)
        assert gc.isenabled() and seen and not any(seen)
        assert all(g.verified for g in result.groups)

        def broken(*a, **k):
            raise OSError("disk gone")

        monkeypatch.setattr(consolidate_module, "scan_daily_files", broken)
        with pytest.raises(OSError):
            consolidate_month(mdir, MAR, as_of=AS_OF)
        assert gc.isenabled()  # an error leaves the collector as it found it
    finally:
        gc.enable()
