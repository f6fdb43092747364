"""History reads page through Dagster's storage and never ask for more than its per-call record limit.

Dagster's limit is 10,000 event records per call (MAX_LIMIT_GET_EVENT_RECORDS); storing that many
events in a test instance takes minutes, so the limit is lowered to 12 and the page to 5: the
same paging with a few dozen records.
"""

import json
import time

import pytest
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.storage.dagster_run import DagsterRun

from trading_maintenance.core.reports import history
from trading_maintenance.core.reports.generate import generate_report
from trading_maintenance.settings import load_settings
from trading_maintenance_tests.reports.conftest import store_health

LOWERED_LIMIT = 12


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setenv("MAX_LIMIT_GET_EVENT_RECORDS", str(LOWERED_LIMIT))
    monkeypatch.setattr(history, "PAGE_SIZE", 5)


def test_lowered_limit_is_enforced_by_dagster(instance, small_pages):
    # Guards the premise of the tests below: asking for more than the limit fails.
    import dagster as dg

    with pytest.raises(DagsterInvariantViolationError, match=f"Cannot fetch more than {LOWERED_LIMIT}"):
        instance.fetch_materializations(dg.AssetKey("system_health"), limit=LOWERED_LIMIT + 1)


def test_health_window_read_in_pages_whatever_lies_after_it(instance, small_pages):
    start = 1_700_000_000.0
    for i in range(3):  # before the window
        store_health(instance, start - 100 + i, health_score=1.0)
    for i in range(LOWERED_LIMIT + 4):  # the window: more than the limit
        store_health(instance, start + i, health_score=50.0 + i, disk_percent=10.0)
    for i in range(LOWERED_LIMIT):  # after it: newer records must not crowd the window out
        store_health(instance, start + 1000 + i, health_score=2.0)
    points = history.load_health(instance, start, start + LOWERED_LIMIT + 4)
    assert [p.values["health_score"] for p in points] == [50.0 + i for i in range(LOWERED_LIMIT + 4)]
    assert [p.timestamp for p in points] == sorted(p.timestamp for p in points)


def test_runs_read_in_pages(instance, small_pages):
    run_ids = [f"{i:08d}-0000-0000-0000-000000000000" for i in range(2 * LOWERED_LIMIT + 3)]
    for run_id in run_ids:
        instance.add_run(DagsterRun(job_name="data_cleanup_job", run_id=run_id, tags={"maintenance/task": "data_cleanup"}))
    rows = history.load_runs(instance, time.time() - 3600, time.time() + 60, with_events=False)
    assert [r.run_id for r in rows] == run_ids


def test_report_over_more_health_checks_than_one_call_returns(instance, small_pages, data_dir):
    now = time.time()
    for i in range(LOWERED_LIMIT + 2):
        store_health(instance, now - 60 * (i + 1), health_score=80.0, cpu_percent=float(i))
    settings = load_settings(None).model_copy(update={"data_dir": data_dir})
    report = json.loads(generate_report(instance, "custom", "json", since=_day(now - 86400), until=_day(now),
                                        sections=["resource_usage"], settings=settings).read_text())
    cpu = next(row for row in report["resource_usage"] if row["metric"] == "cpu_percent")
    assert cpu["samples"] == LOWERED_LIMIT + 2 and cpu["max"] == float(LOWERED_LIMIT + 1)


def _day(ts: float):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ts, ZoneInfo("America/New_York")).date()
