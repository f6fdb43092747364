"""The CLI's task names (`--task NAME`), each mapped to one Dagster job.

Derived from the loaded jobs, never kept by hand: every job tagged `maintenance/task` (which
`MaintenanceTask` in defs/task.py gives a task's job) is a task, with the job's description and
its partitions. Loading definitions takes seconds, so the table is built on first use only:
importing this module stays cheap for commands that read only the instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

TASK_TAG = "maintenance/task"
IN_RUN_ALL_TAG = "maintenance/in_run_all"


@dataclass(frozen=True)
class Task:
    name: str
    job_name: str
    description: str
    partitioned: str | None = None  # "monthly" / "weekly" / "daily" when the job's assets are partitioned
    in_run_all: bool = True


ALIASES = {"backup_critical_data": "backup"}


def tasks_from_jobs(jobs) -> dict[str, Task]:
    """One Task per job tagged `maintenance/task`, by task name."""
    found: dict[str, Task] = {}
    for job in jobs:
        tags = job.tags or {}
        name = tags.get(TASK_TAG)
        if not name:
            continue
        if name in found:
            raise ValueError(f"task {name!r} is the task of two jobs: {found[name].job_name} and {job.name}")
        found[name] = Task(
            name=name,
            job_name=job.name,
            description=job.description or "",
            partitioned=_partition_kind(job.partitions_def),
            in_run_all=tags.get(IN_RUN_ALL_TAG, "true") != "false",
        )
    return dict(sorted(found.items()))


def _partition_kind(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    cron = getattr(partitions_def, "cron_schedule", "")
    fields = cron.split()
    if len(fields) == 5 and fields[2] != "*":
        return "monthly"
    if len(fields) == 5 and fields[4] != "*":
        return "weekly"
    return "daily"


@lru_cache(maxsize=1)
def _loaded_tasks() -> dict[str, Task]:
    from trading_maintenance.definitions import defs

    return tasks_from_jobs(defs.get_repository_def().get_all_jobs())


def __getattr__(name: str):
    if name == "TASKS":
        return _loaded_tasks()
    raise AttributeError(name)


def resolve_task(name: str) -> Task:
    """The task for a name or alias; KeyError with the valid names otherwise."""
    key = ALIASES.get(name, name)
    tasks = _loaded_tasks()
    if key not in tasks:
        raise KeyError(name)
    return tasks[key]


def valid_task_names() -> list[str]:
    return sorted([*_loaded_tasks(), *ALIASES])
