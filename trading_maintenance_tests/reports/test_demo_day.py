"""A day of the demo platform: the daily maintenance jobs run (dry and real) against a tmp instance,
then every report type in every format is written and its task numbers equal run storage."""

import csv
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.reports.generate import FORMATS, generate_report, report_period
from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.defs.hygiene.api_rate_limit_reset import api_rate_limit_job
from trading_maintenance.defs.hygiene.cache_cleanup import cache_cleanup_job
from trading_maintenance.defs.hygiene.data_cleanup import data_cleanup_job
from trading_maintenance.defs.hygiene.log_rotation import log_rotation_job
from trading_maintenance.defs.intelligence.ops import intelligent_maintenance_job
from trading_maintenance.demo.seed import mark_demo_redis, seed_platform
from trading_maintenance.resources.database import database_engine
from trading_maintenance.run_launch import dry_run_config
from trading_maintenance_tests.conftest import run_asset_job

NY = ZoneInfo("America/New_York")
# The daily rows of the schedule table that are cheap on a small demo, in their order of the day;
# the hygiene tasks run once as a dry run (as an operator would first) and once for real.
DRY_THEN_REAL = (data_cleanup_job, log_rotation_job, cache_cleanup_job)
ONCE = (api_rate_limit_job, intelligent_maintenance_job)


def _run_a_day(instance, resources) -> None:
    run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance)
    api_rate_limit_job.execute_in_process(instance=instance, resources=resources, raise_on_error=False)
    for job in DRY_THEN_REAL:
        job.execute_in_process(run_config=dry_run_config(job), instance=instance, resources=resources, raise_on_error=False)
        job.execute_in_process(instance=instance, resources=resources, raise_on_error=False)
    run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance)
    intelligent_maintenance_job.execute_in_process(instance=instance, resources=resources, raise_on_error=False)


def _from_run_storage(instance) -> dict[str, dict]:
    """Per task, straight from run storage: finished runs apart from dry runs, their outcomes, bytes freed."""
    table: dict[str, dict] = {}
    for record in instance.get_run_records(dg.RunsFilter()):
        run = record.dagster_run
        row = table.setdefault(run.tags["maintenance/task"], {"runs": 0, "succeeded": 0, "failed": 0, "dry_runs": 0, "bytes_freed": 0})
        if any((op.get("config") or {}).get("dry_run") for op in (run.run_config.get("ops") or {}).values()):
            row["dry_runs"] += 1
            continue
        row["runs"] += 1
        row["succeeded" if run.status == dg.DagsterRunStatus.SUCCESS else "failed"] += 1
        for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
            freed = event.dagster_event.step_output_data.metadata.get("bytes_freed")
            row["bytes_freed"] += int(freed.value) if freed is not None else 0
    return table


def test_reports_of_a_demo_day_match_run_storage(instance, make_resources, redis_client, data_dir):
    mark_demo_redis(redis_client)  # the test's own Redis database
    seeded = seed_platform(data_dir, redis_client, database_engine("", data_dir), symbols=2, days=5, database_takeable=True)
    assert seeded["fills"] > 0
    resources = make_resources()
    settings = resources["settings"].get()

    _run_a_day(instance, resources)
    expected = _from_run_storage(instance)
    assert expected["data_cleanup"]["dry_runs"] == 1 and expected["data_cleanup"]["runs"] == 1
    assert expected["system_health_check"]["runs"] == 2
    assert sum(row["bytes_freed"] for row in expected.values()) > 0  # the demo holds expired files

    today = datetime.now(NY).date()
    periods = {
        "daily": dict(day=today),
        "weekly": dict(period=report_period("weekly", today + timedelta(days=7))),  # the week holding today
        "custom": dict(since=today - timedelta(days=1), until=today),
    }
    for report_type, when in periods.items():
        paths = {fmt: generate_report(instance, report_type, fmt, settings=settings, **when) for fmt in FORMATS}
        assert {p.parent for p in paths.values()} == {data_dir / "reports" / "maintenance" / report_type}
        report = json.loads(paths["json"].read_text())
        got = {t["task"]: {k: t[k] for k in ("runs", "succeeded", "failed", "dry_runs", "bytes_freed")} for t in report["tasks"]}
        assert got == expected, report_type
        rows = {r["task"]: r for r in csv.DictReader(paths["csv"].open())}
        assert {task: {k: int(rows[task][k]) for k in ("runs", "succeeded", "failed")} for task in rows} == \
            {task: {k: expected[task][k] for k in ("runs", "succeeded", "failed")} for task in expected}
        html = paths["html"].read_text()
        assert html.lstrip().lower().startswith("<!doctype html") and all(task in html for task in expected)
