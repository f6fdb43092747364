"""A maintenance task declared once: its name (the CLI's `--task`), description and schedule.

`MaintenanceTask` gives the task's job its tags (`maintenance/task`, which the CLI's task table,
the history and the instance's one-run-per-task limit read, and `dagster/max_runtime`), gives
every op and asset of the task the pool `maintenance_<task>` (one step of a task at a time, however
its run was launched) and builds its schedule from the schedule table.

What Definitions need before any run (schedule times, the time zone, where partitions start) is
read here, once, from the validated settings; everything a run uses comes through resources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from trading_maintenance.core.runs.schedule_table import ScheduleRow, cron_for, rows_for
from trading_maintenance.settings import Settings, get_settings

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

TASK_TAG = "maintenance/task"
IN_RUN_ALL_TAG = "maintenance/in_run_all"
OWNERS = ["team:trading-ops"]


def load_time_settings() -> Settings:
    """The settings Definitions are built from (validated: a bad value fails loading, naming it)."""
    return get_settings()


def maintenance_timezone() -> str:
    return load_time_settings().maintenance.scheduling.timezone


def partitions_start() -> str:
    return load_time_settings().maintenance.scheduling.partitions_start_date


@dataclass(frozen=True)
class MaintenanceTask:
    name: str
    description: str
    in_run_all: bool = True

    @property
    def pool(self) -> str:
        return f"maintenance_{self.name}"

    @property
    def tags(self) -> dict[str, str]:
        timeout_seconds = load_time_settings().tasks.task_timeout_minutes * 60
        tags = {TASK_TAG: self.name, "dagster/max_runtime": str(timeout_seconds)}
        if not self.in_run_all:
            tags[IN_RUN_ALL_TAG] = "false"
        return tags

    def op_job(self, name: str) -> Callable[[Callable], dg.JobDefinition]:
        """Decorator: the task's op job (its body wires the ops)."""
        return dg.job(name=name, description=self.description, tags=self.tags)

    def asset_job(self, name: str, selection, partitions_def=None) -> UnresolvedAssetJobDefinition:
        return dg.define_asset_job(
            name, selection=selection, partitions_def=partitions_def, description=self.description, tags=self.tags
        )

    def schedule(self, job, evaluate: Callable | None = None) -> dg.ScheduleDefinition:
        """The task's schedule from its row of the schedule table; `evaluate` (a schedule
        function) decides per tick when a plain run request is not enough."""
        rows = rows_for(self.name)
        if len(rows) != 1:
            raise ValueError(f"task {self.name!r} needs exactly one row in core/runs/schedule_table.py, found {len(rows)}")
        return schedule_from_row(rows[0], job, evaluate)


def schedule_from_row(row: ScheduleRow, job, evaluate: Callable | None = None) -> dg.ScheduleDefinition:
    scheduling = load_time_settings().maintenance.scheduling
    cron, when = cron_for(row, scheduling)
    description = f"{when} ({scheduling.timezone}): {row.description}"
    common = dict(
        name=row.name,
        job=job,
        cron_schedule=cron,
        execution_timezone=scheduling.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )
    if evaluate is None:
        return dg.ScheduleDefinition(**common)
    return dg.schedule(**common)(evaluate)
