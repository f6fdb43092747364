"""Maintenance reports on demand, written by the same code as the scheduled report."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends

from trading_maintenance.api.context import ApiContext, ApiProblem
from trading_maintenance.api.deps import context
from trading_maintenance.api.models import ErrorBody, ReportGenerated, ReportRequest

router = APIRouter(prefix="/maintenance", tags=["reports"])
MAX_INLINE_BYTES = 2 * 1024 * 1024


@router.post("/reports/generate", response_model=ReportGenerated, responses={422: {"model": ErrorBody}},
             summary="Write a daily, weekly or custom report under reports/maintenance/ and return it")
def generate(body: ReportRequest | None = Body(None), ctx: ApiContext = Depends(context)) -> dict:
    from trading_maintenance.core.reports.build import SECTIONS
    from trading_maintenance.core.reports.generate import generate_report
    from trading_maintenance.resources.database import settings_trading_engine

    body = body or ReportRequest()
    try:
        path = generate_report(ctx.instance, body.report_type, body.format_type, since=body.since, until=body.until,
                               sections=list(SECTIONS) if body.include_details else None, settings=ctx.settings,
                               open_trading_engine=lambda: settings_trading_engine(ctx.settings))
    except ValueError as exc:
        raise ApiProblem(422, f"report: {exc}".replace("--since", "since").replace("--until", "until")) from None
    size = path.stat().st_size
    content = path.read_text(encoding="utf-8") if size <= MAX_INLINE_BYTES else None
    return {"report_type": body.report_type, "format_type": body.format_type, "path": str(path), "content": content}
