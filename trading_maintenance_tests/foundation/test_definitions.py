"""Loads the whole Definitions as `dagster dev` would and checks every task, schedule and sensor."""

import dagster as dg

from trading_maintenance.definitions import defs
from trading_maintenance.tasks import TASKS


def test_definitions_load_and_every_task_maps_to_a_defined_job():
    repository = defs.get_repository_def()
    jobs = {job.name for job in repository.get_all_jobs()}
    missing = sorted(task.job_name for task in TASKS.values() if task.job_name not in jobs)
    assert missing == [], f"tasks whose job is not defined: {missing}"


def test_every_schedule_has_timezone_description_and_deliberate_status():
    repository = defs.get_repository_def()
    assert repository.schedule_defs
    for schedule in repository.schedule_defs:
        assert schedule.execution_timezone == "America/New_York", schedule.name
        assert schedule.description, schedule.name
        assert schedule.default_status in (dg.DefaultScheduleStatus.RUNNING, dg.DefaultScheduleStatus.STOPPED)
    for sensor in repository.sensor_defs:
        assert sensor.description, sensor.name


def test_every_job_is_described_and_time_limited():
    for job in defs.get_repository_def().get_all_jobs():
        if job.name.startswith("__"):
            continue
        assert job.description, job.name
        assert int(job.tags["dagster/max_runtime"]) > 0, job.name
