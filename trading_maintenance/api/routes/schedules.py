"""Schedules and sensors, paused and resumed in Dagster's own instigator state so the UI agrees."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path

from trading_maintenance.api import queries
from trading_maintenance.api.context import ApiContext, ApiProblem
from trading_maintenance.api.deps import context
from trading_maintenance.api.models import NAME_PATTERN, ErrorBody, ScheduleList, ScheduleState

router = APIRouter(prefix="/maintenance", tags=["schedules"])


@router.get("/schedule", response_model=ScheduleList, summary="Every schedule and sensor: state and next tick")
def schedule_list(ctx: ApiContext = Depends(context)) -> dict:
    return {"items": queries.schedules(ctx)}


@router.post("/schedule/{schedule_name}/{action}", response_model=ScheduleState, responses={404: {"model": ErrorBody}},
             summary="Pause or resume a schedule or sensor")
def pause_or_resume(action: Literal["pause", "resume"], schedule_name: str = Path(pattern=NAME_PATTERN),
                    ctx: ApiContext = Depends(context)) -> dict:
    repository = ctx.remote_repository()
    if repository.has_schedule(schedule_name):
        remote = repository.get_schedule(schedule_name)
        if action == "resume":
            ctx.instance.start_schedule(remote)
        else:
            ctx.instance.stop_schedule(remote.get_remote_origin_id(), remote.selector_id, remote)
    elif repository.has_sensor(schedule_name):
        remote = repository.get_sensor(schedule_name)
        if action == "resume":
            ctx.instance.start_sensor(remote)
        else:
            ctx.instance.stop_sensor(remote.get_remote_origin_id(), remote.selector_id, remote)
    else:
        names = sorted(item["name"] for item in queries.schedules(ctx))
        raise ApiProblem(404, f"unknown schedule or sensor {schedule_name!r}", valid=names)
    ctx.forget_answers()
    return next(item for item in queries.schedules(ctx) if item["name"] == schedule_name)
