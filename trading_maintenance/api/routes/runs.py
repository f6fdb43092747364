"""Reading state: health, runs in progress and queued, history, one run, per-task metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query

from trading_maintenance.api import queries
from trading_maintenance.api.context import ApiContext, ApiProblem
from trading_maintenance.api.deps import context
from trading_maintenance.api.models import (
    NAME_PATTERN,
    RUN_ID_PATTERN,
    ErrorBody,
    HealthHistory,
    MetricsAnswer,
    RunDetail,
    RunSummary,
    Status,
)
from trading_maintenance.api.routes.tasks import task_named
from trading_maintenance.tasks import TASKS

router = APIRouter(prefix="/maintenance", tags=["state"])


def _status_answer(ctx: ApiContext):
    return "status", lambda: queries.status(ctx), Status


def _history_answer(ctx: ApiContext, limit: int, job_name: str | None):
    return ("history", limit, job_name), lambda: queries.history(ctx, limit, job_name), list[RunSummary]


def warm_up(ctx: ApiContext) -> None:
    """Compute the status and the default history once before the server takes requests: the first
    reads import and open the Redis client and the storage reader (~0.3 s), which every poller
    connecting at once would otherwise wait for."""
    for answer in (_status_answer(ctx), _history_answer(ctx, 50, None)):
        ctx.refresh_json(*answer)


@router.get("/status", response_model=Status, summary="Latest health with reasons, runs in progress and queued, results, alerts")
async def status(ctx: ApiContext = Depends(context)):
    return await ctx.recent_json(*_status_answer(ctx))


@router.get("/health/history", response_model=HealthHistory, summary="Health scores recorded over the last hours")
def health_history(hours: int = Query(24, ge=1, le=24 * 31), ctx: ApiContext = Depends(context)) -> dict:
    return {"hours": hours, "points": queries.health_history(ctx, hours)}


@router.get("/history", response_model=list[RunSummary], responses={404: {"model": ErrorBody}}, summary="Past runs, newest first")
async def history(limit: int = Query(50, ge=1, le=1000), task: str | None = Query(None, pattern=NAME_PATTERN),
                  ctx: ApiContext = Depends(context)):
    job_name = task_named(task).job_name if task else None
    return await ctx.recent_json(*_history_answer(ctx, limit, job_name))


@router.get("/runs/{run_id}", response_model=RunDetail, responses={404: {"model": ErrorBody}},
            summary="One run: status, timings, failures and the task's result")
def run(run_id: str = Path(pattern=RUN_ID_PATTERN), ctx: ApiContext = Depends(context)) -> dict:
    detail = queries.run_detail(ctx, run_id)
    if detail is None:
        raise ApiProblem(404, f"no run {run_id!r} in this instance")
    return detail


@router.get("/metrics", response_model=MetricsAnswer, responses={404: {"model": ErrorBody}},
            summary="Per task over 7 and 30 days: runs, success rate, durations, bytes freed, files processed")
def metrics(task_name: str | None = Query(None, pattern=NAME_PATTERN), ctx: ApiContext = Depends(context)) -> dict:
    names = [task_named(task_name).name] if task_name else list(TASKS)
    return {"tasks": queries.task_metrics(ctx, names)}
