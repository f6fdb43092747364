"""Starting runs: one task, every task, an emergency. Each goes to the instance's run queue."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Path, Query

from trading_maintenance.api.context import API_TRIGGER, EMERGENCY_PRIORITY, EMERGENCY_TRIGGER, ApiContext, ApiProblem
from trading_maintenance.api.deps import context
from trading_maintenance.api.models import NAME_PATTERN, ErrorBody, RunAllSubmitted, RunRequest, RunSubmitted, TaskInfo
from trading_maintenance.tasks import TASKS, Task, resolve_task, valid_task_names

router = APIRouter(prefix="/maintenance", tags=["runs"])
ERRORS = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def task_named(name: str) -> Task:
    try:
        return resolve_task(name)
    except KeyError:
        raise ApiProblem(404, f"unknown task {name!r}", valid=valid_task_names()) from None


@router.get("/tasks", response_model=list[TaskInfo], summary="The maintenance tasks, each one Dagster job")
def task_list() -> list[dict]:
    return [{"name": t.name, "job": t.job_name, "description": t.description, "partitioned": t.partitioned,
             "in_run_all": t.in_run_all} for t in TASKS.values()]


@router.post("/tasks/{task_name}/run", status_code=202, response_model=RunSubmitted, responses=ERRORS,
             summary="Submit one task's job to the run queue")
def run_task(task_name: str = Path(max_length=100), body: RunRequest | None = Body(None),
             ctx: ApiContext = Depends(context)) -> dict:
    body = body or RunRequest()
    return ctx.submit(task_named(task_name), body.dry_run, body.partition, API_TRIGGER)


@router.post("/run-all", status_code=202, response_model=RunAllSubmitted, responses=ERRORS,
             summary="Submit every routine task; the run queue applies the limits")
def run_all(body: RunRequest | None = Body(None), ctx: ApiContext = Depends(context)) -> dict:
    body = body or RunRequest()
    if body.partition is not None:
        raise ApiProblem(422, "partition: run-all takes no partition (each partitioned task runs its latest complete one)")
    runs, skipped = [], []
    for task in TASKS.values():
        if not task.in_run_all:
            continue
        try:
            runs.append(ctx.submit(task, body.dry_run, None, API_TRIGGER))
        except ApiProblem as problem:
            if problem.status_code != 422:
                raise
            skipped.append(f"{task.name}: {problem.message}")
    return {"runs": runs, "skipped": skipped}


@router.post("/emergency", status_code=202, response_model=RunSubmitted, responses=ERRORS,
             summary="Submit the emergency job (or one named task) ahead of routine runs")
def emergency(task_name: str | None = Query(None, pattern=NAME_PATTERN), ctx: ApiContext = Depends(context)) -> dict:
    task = task_named(task_name) if task_name else TASKS["emergency_maintenance"]
    return ctx.submit(task, False, None, EMERGENCY_TRIGGER, {"dagster/priority": EMERGENCY_PRIORITY})
