"""The market-data assets, checks, job and schedule run through Dagster against real files and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import polars as pl

from trading_maintenance.core.market_data.layout import KEY, archive_dir_for, archive_path
from trading_maintenance.core.market_data.months import month_bounds
from trading_maintenance.market_data import read_bars
from trading_maintenance_tests.market_data.synth import daily_path, generate

# Months well past the 90-day retention of the real clock, so cleanup deletes their daily files.
NOV = "2024-11"
NOV_KEY = "2024-11-01"


def run_job(md_defs, partition_key, instance, dry_run=False):
    job = md_defs.resolve_job_def("market_data_monthly_job")
    run_config = {}
    if dry_run:
        run_config = {"ops": {name: {"config": {"dry_run": True}} for name in ("market_data_monthly", "market_data_daily_cleanup")}}
    return job.execute_in_process(partition_key=partition_key, instance=instance, run_config=run_config, raise_on_error=False)


def checks_of(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def all_bars(mdir, symbols, month):
    first, last = month_bounds(month)
    return {s: read_bars(s, "1min", first, last + timedelta(days=1), market_data_dir=mdir) for s in symbols}


def test_job_consolidates_checks_publishes_and_deletes_after_retention(md_defs, mdir, redis_client):
    generate(mdir, ["AAA", "BBB"], date(2024, 11, 1), date(2024, 11, 30), dup_fraction=0.02)
    before = all_bars(mdir, ["AAA", "BBB"], NOV)
    assert before["AAA"].height == 19 * 390 + 210
    with dg.instance_for_test() as instance:
        result = run_job(md_defs, NOV_KEY, instance)
        assert result.success
        assert checks_of(result) == {"no_duplicate_keys": True, "ohlc_sanity": True, "calendar_coverage": True, "archive_matches_sources": True}
        mat = result.asset_materializations_for_node("market_data_monthly")[0]
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert meta["files_read"] == 40 and meta["rows_out"] == 2 * (19 * 390 + 210)
        assert meta["duplicates_removed"] == meta["rows_in"] - meta["rows_out"] > 0
        assert meta["bytes_after"] > 0 and meta["compression_ratio"] > 0
        cleanup = result.asset_materializations_for_node("market_data_daily_cleanup")[0]
        assert cleanup.metadata["files_deleted"].value == 40
    assert not any(list((mdir / s / "1min").glob("*.parquet")) for s in ("AAA", "BBB"))
    after = all_bars(mdir, ["AAA", "BBB"], NOV)
    for s in ("AAA", "BBB"):
        assert after[s].equals(before[s])
    published = json.loads(redis_client.get("maintenance:result:trading_data_maintenance"))
    assert published["status"] == "success" and published["run_id"] == result.run_id
    assert published["daily_files_deleted"] == 40 and published["rows_out"] == 2 * (19 * 390 + 210)
    assert redis_client.llen("maintenance:history") >= 2


def test_dry_run_changes_nothing(md_defs, mdir, data_dir):
    generate(mdir, ["AAA"], date(2024, 11, 25), date(2024, 11, 27))
    bad = daily_path(mdir, "AAA", "1min", date(2024, 11, 26))
    bad.write_bytes(b"garbage")
    with dg.instance_for_test() as instance:
        result = run_job(md_defs, NOV_KEY, instance, dry_run=True)
    assert result.success
    # a dry run leaves no materialization and no check result, only its plan
    assert not result.get_asset_materialization_events() and not result.get_asset_check_evaluations()
    (plan,) = [e.asset_observation_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert plan.partition == NOV_KEY and plan.metadata["dry_run"].value
    assert plan.metadata["would_quarantine_files"].value == 1 and str(bad) in plan.metadata["first_items"].value
    assert bad.exists() and not (data_dir / "parquet" / "archive").exists()
    assert len(list((mdir / "AAA" / "1min").glob("*.parquet"))) == 3


def test_blocking_check_failure_stops_deletion(md_defs, mdir, redis_client):
    generate(mdir, ["AAA", "BBB"], date(2024, 11, 18), date(2024, 11, 22))
    # a real write failure for AAA: the archive's name is taken by a folder, the rename fails
    blocker = archive_path(archive_dir_for(mdir), "AAA", "1min", NOV)
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("x")
    with dg.instance_for_test() as instance:
        result = run_job(md_defs, NOV_KEY, instance)
        assert not result.success
        assert checks_of(result)["archive_matches_sources"] is False
        assert not result.asset_materializations_for_node("market_data_daily_cleanup")
        cleanup_step = [e for e in result.all_events if e.step_key == "market_data_daily_cleanup" and e.is_step_success]
        assert not cleanup_step
    # BBB's archive was written and verified, yet nothing was deleted: the check blocks the cleanup
    assert archive_path(archive_dir_for(mdir), "BBB", "1min", NOV).is_file()
    assert len(list((mdir / "AAA" / "1min").glob("*.parquet"))) == 5
    assert len(list((mdir / "BBB" / "1min").glob("*.parquet"))) == 5
    published = json.loads(redis_client.get("maintenance:result:trading_data_maintenance"))
    assert published["status"] == "failed" and published["groups_failed"] == 1
    assert any("AAA/1min" in f for f in published["failed_groups"])

    # once the obstacle is gone, a rerun archives AAA and the cleanup proceeds
    (blocker / "keep").unlink()
    blocker.rmdir()
    with dg.instance_for_test() as instance:
        assert run_job(md_defs, NOV_KEY, instance).success
    assert not list((mdir / "AAA" / "1min").glob("*.parquet"))


def test_truncated_file_quarantined_through_dagster(md_defs, mdir, data_dir):
    generate(mdir, ["AAA", "BBB"], date(2024, 11, 18), date(2024, 11, 20))
    bad = daily_path(mdir, "BBB", "1min", date(2024, 11, 19))
    bad.write_bytes(bad.read_bytes()[:300])
    with dg.instance_for_test() as instance:
        result = run_job(md_defs, NOV_KEY, instance)
    assert result.success  # bad input is reported, never fatal
    checks = checks_of(result)
    assert checks["calendar_coverage"] is False  # 3 of November's 20 sessions: a warning, not a failure
    assert checks["archive_matches_sources"] is True
    mat = result.asset_materializations_for_node("market_data_monthly")[0]
    assert mat.metadata["files_quarantined"].value == 1
    assert "BBB" in mat.metadata["worst_symbols"].value
    assert (data_dir / "parquet" / "quarantine" / "market_data" / "BBB" / "1min" / bad.name).exists()
    assert archive_path(archive_dir_for(mdir), "AAA", "1min", NOV).is_file()


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.layout import KEY, archive_dir_for, archive_path
from trading_maintenance.core.market_data.months import month_bounds
mdir = Path(sys.argv[1])
result = consolidate_month(mdir, sys.argv[2])
assert all(g.verified for g in result.groups), [g.error for g in result.groups]
# the archives are written and verified; crash before any daily file is deleted
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_crash_after_archive_before_deletion_rerun_completes(md_defs, mdir):
    generate(mdir, ["AAA", "BBB"], date(2024, 11, 1), date(2024, 11, 30), dup_fraction=0.03)
    before = all_bars(mdir, ["AAA", "BBB"], NOV)
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(mdir), NOV], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert archive_path(archive_dir_for(mdir), "AAA", "1min", NOV).is_file()
    assert len(list((mdir / "AAA" / "1min").glob("*.parquet"))) == 20  # nothing deleted yet
    # a second crash left a half-written temporary archive behind
    target = archive_path(archive_dir_for(mdir), "BBB", "1min", NOV)
    leftover = target.parent / f".{target.name}.4242.tmp"
    leftover.write_bytes(b"PAR1 half")
    os.utime(leftover, (0, 0))  # left long ago, whatever process 4242 is now
    # and a cleanup that died halfway had removed some archived files already
    for d in (date(2024, 11, 4), date(2024, 11, 5)):
        daily_path(mdir, "AAA", "1min", d).unlink()
    with dg.instance_for_test() as instance:
        result = run_job(md_defs, NOV_KEY, instance)
        assert result.success
        assert checks_of(result)["archive_matches_sources"] is True
    assert not list(target.parent.glob(".*.tmp"))
    assert not list((mdir / "AAA" / "1min").glob("*.parquet"))
    after = all_bars(mdir, ["AAA", "BBB"], NOV)
    for s in ("AAA", "BBB"):
        assert after[s].equals(before[s]), s
    # and a rerun with only the archives left is a no-op that keeps every bar
    with dg.instance_for_test() as instance:
        assert run_job(md_defs, NOV_KEY, instance).success
    assert all_bars(mdir, ["AAA"], NOV)["AAA"].equals(before["AAA"])


def test_backfill_of_several_months(md_defs, mdir):
    months = ["2024-01", "2024-02", "2024-03"]
    for m in months:
        first, _ = month_bounds(m)
        generate(mdir, ["AAA"], first, first + timedelta(days=9), dup_fraction=0.02)
    with dg.instance_for_test() as instance:
        # one run per partition, as a multi-run backfill launches them
        job = md_defs.resolve_job_def("market_data_monthly_job")
        results = [job.execute_in_process(partition_key=f"{m}-01", instance=instance, tags={"dagster/backfill": "test-backfill"}) for m in months]
        assert all(r.success for r in results)
        materialized = instance.get_materialized_partitions(dg.AssetKey("market_data_monthly"))
        assert materialized == {f"{m}-01" for m in months}
        records = instance.fetch_materializations(dg.AssetKey("market_data_monthly"), limit=10).records
        assert {r.asset_materialization.partition for r in records} == {f"{m}-01" for m in months}
    for m in months:
        archive = pl.read_parquet(archive_path(archive_dir_for(mdir), "AAA", "1min", m))
        assert archive["timestamp"].dt.strftime("%Y-%m").unique().to_list() == [m]
        assert archive["timestamp"].is_sorted() and archive.n_unique(subset=KEY) == archive.height


def test_schedule_requests_latest_complete_and_current_month(md_defs):
    schedule = md_defs.resolve_schedule_def("market_data_monthly_schedule")
    assert schedule.cron_schedule == "0 23 * * 6" and schedule.execution_timezone == "America/New_York"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # Saturday 2024-05-04 23:00 ET: April is final, May so far
    when = datetime(2024, 5, 5, 3, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=md_defs.get_repository_def(),
                                       resources={"settings": md_defs.resources["settings"]}) as ctx:
            requests = list(schedule.evaluate_tick(ctx).run_requests)
    assert [r.partition_key for r in requests] == ["2024-04-01", "2024-05-01"]
    assert len({r.run_key for r in requests}) == 2
    # Saturday 2024-11-30 23:00 ET: November's last session (early close, 29th) is over
    when = datetime(2024, 12, 1, 4, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=md_defs.get_repository_def(),
                                       resources={"settings": md_defs.resources["settings"]}) as ctx:
            requests = list(schedule.evaluate_tick(ctx).run_requests)
    assert [r.partition_key for r in requests] == ["2024-11-01"]


def test_full_definitions_load_with_market_data():
    with dg.instance_for_test():  # a live instance: an earlier test's closed one may linger in Dagster's globals
        from trading_maintenance.definitions import defs
        from trading_maintenance.tasks import resolve_task

        _check_full_definitions(defs, resolve_task)


def _check_full_definitions(defs, resolve_task):
    job = defs.resolve_job_def(resolve_task("trading_data_maintenance").job_name)
    assert job.name == "market_data_monthly_job"
    assert job.tags["maintenance/task"] == "trading_data_maintenance"
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("market_data_daily") in graph.external_asset_keys
    monthly = graph.get(dg.AssetKey("market_data_monthly"))
    assert dg.AssetKey("market_data_daily") in monthly.parent_keys
    specs = {c.name: c for c in defs.resolve_assets_def("market_data_monthly").check_specs}
    assert specs["archive_matches_sources"].blocking and not specs["ohlc_sanity"].blocking
    defs.resolve_schedule_def("market_data_monthly_schedule")


def test_misnamed_file_and_crashed_temporary_handled_through_dagster(md_defs, mdir, data_dir):
    generate(mdir, ["AAA"], date(2024, 11, 18), date(2024, 11, 19))
    impossible = mdir / "AAA" / "1min" / "2024-11-31.parquet"
    impossible.write_bytes(daily_path(mdir, "AAA", "1min", date(2024, 11, 18)).read_bytes())
    folder = archive_path(archive_dir_for(mdir), "AAA", "1min", NOV).parent
    folder.mkdir(parents=True)
    crashed = folder / f".{NOV}.manifest.json.notapid.tmp"
    crashed.write_text("{")
    with dg.instance_for_test() as instance:
        result = run_job(md_defs, NOV_KEY, instance)
    assert result.success
    mat = result.asset_materializations_for_node("market_data_monthly")[0]
    assert mat.metadata["files_misnamed"].value == 1 and mat.metadata["stale_temporaries_removed"].value == 1
    assert "2024-11-31 is not a real date" in mat.metadata["quarantined"].value
    assert not impossible.exists() and not crashed.exists()
    assert (data_dir / "parquet" / "quarantine" / "market_data" / "AAA" / "1min" / "2024-11-31.parquet.reason.txt").exists()
