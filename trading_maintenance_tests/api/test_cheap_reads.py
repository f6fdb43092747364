"""/maintenance/status and /maintenance/history read Dagster's local SQLite files directly (no SQLAlchemy
per request), and that read agrees with Dagster's own storage classes run for run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from trading_maintenance.api.context import ApiContext
from trading_maintenance.api.queries import history, run_summary, runs_with_status
from trading_maintenance.instance_read import DagsterStorageReader, SqliteFilesReader


@dg.op
def _step():
    return 1


@dg.job(name="log_rotation_job", tags={"maintenance/task": "log_rotation"})
def _rotation():
    _step()


@dg.job(name="cache_cleanup_job", tags={"maintenance/task": "cache_cleanup"})
def _cleanup():
    _step()


def _seed(instance) -> None:
    statuses = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.FAILURE]
    for index in range(12):
        job = _rotation if index % 3 else _cleanup
        instance.create_run_for_job(job, status=statuses[index % len(statuses)], tags={"maintenance/trigger": f"t{index}"})


def test_local_files_and_storage_classes_agree_on_filtered_runs(instance):
    _seed(instance)
    direct, through_dagster = SqliteFilesReader(Path(instance.root_directory)), DagsterStorageReader(instance)
    for query in ({"limit": 5}, {"limit": 50, "job_name": "log_rotation_job"}, {"limit": 50, "statuses": ("NOT_STARTED", "STARTED")},
                  {"limit": 2, "statuses": ("SUCCESS",), "job_name": "cache_cleanup_job"}):
        expected = [run_summary(row) for row in through_dagster.runs(**query)]
        assert [run_summary(row) for row in direct.runs(**query)] == expected and expected, query
    assert all(row.created_at for row in direct.runs(50))


def test_status_and_history_answer_from_the_local_files(instance):
    from trading_maintenance.settings import load_settings

    _seed(instance)
    ctx = ApiContext(instance=instance, settings=load_settings(), token=None)
    assert isinstance(ctx.storage_reader(), SqliteFilesReader)
    records = instance.get_run_records(dg.RunsFilter(job_name="log_rotation_job"), limit=3)
    answered = history(ctx, 3, "log_rotation_job")
    assert [row["run_id"] for row in answered] == [record.dagster_run.run_id for record in records]
    assert answered[0]["created_at"] == records[0].create_timestamp.isoformat()
    not_started = runs_with_status(ctx, [dg.DagsterRunStatus.NOT_STARTED])
    assert len(not_started) == 3 and {row["status"] for row in not_started} == {"NOT_STARTED"}
