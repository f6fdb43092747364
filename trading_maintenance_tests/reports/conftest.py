"""A seeded maintenance history: real runs of small jobs tagged like the project's tasks."""

import logging

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry


class WorkConfig(dg.Config):
    dry_run: bool = False
    fail: bool = False
    freed: int = 0


@dg.op
def work(context: dg.OpExecutionContext, config: WorkConfig) -> int:
    if config.fail:
        raise PermissionError("cannot remove /data/temp/x.tmp: permission denied\nsecond line")
    context.add_output_metadata({"dry_run": config.dry_run, "bytes_freed": 0 if config.dry_run else config.freed,
                                 "files_deleted": 0 if config.dry_run else 2, "files_kept": 9})
    return 1


def task_job(task: str) -> dg.JobDefinition:
    @dg.job(name=f"{task}_job", tags={"maintenance/task": task})
    def job():
        work()

    return job


def run(instance, task: str, fail: bool = False, dry_run: bool = False, freed: int = 0) -> dg.ExecuteInProcessResult:
    return task_job(task).execute_in_process(
        run_config={"ops": {"work": {"config": {"fail": fail, "dry_run": dry_run, "freed": freed}}}},
        instance=instance, raise_on_error=False,
    )


def store_health(instance, timestamp: float, **values: float) -> None:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="system_health_check_job",
        event_specific_data=StepMaterializationData(dg.AssetMaterialization(asset_key="system_health", metadata=values)),
    )
    instance.store_event(EventLogEntry(error_info=None, level=logging.INFO, user_message="", run_id="", timestamp=timestamp, dagster_event=event))


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance
