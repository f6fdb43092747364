"""The dashboard page and the API's own health."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from trading_maintenance.api.models import ApiHealth

router = APIRouter()


@router.get("/maintenance/dashboard", response_class=HTMLResponse, tags=["dashboard"],
            summary="The live dashboard (one self-contained page; it asks for the token when the API has one)")
def dashboard() -> HTMLResponse:
    page = files("trading_maintenance.api").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP})


@router.get("/health", response_model=ApiHealth, tags=["api"], summary="The API itself answers")
def api_health() -> dict:
    try:
        package_version = version("trading-maintenance")
    except PackageNotFoundError:
        package_version = "unknown"
    return {"status": "ok", "version": package_version}


# Everything the page needs is inline and it only talks to this server.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"
