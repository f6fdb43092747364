"""The FastAPI application: routes over the Dagster instance, JSON errors, the bearer token."""

from __future__ import annotations

import logging
import os

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trading_maintenance.api.context import ApiContext, ApiProblem
from trading_maintenance.api.deps import require_token
from trading_maintenance.api.routes import pages, reports, runs, schedules, tasks
from trading_maintenance.core.common.masking import mask_text

TOKEN_ENV = "MAINTENANCE_API_TOKEN"
log = logging.getLogger("trading_maintenance.api")


def create_app(instance=None, settings=None, token: str | None = None) -> FastAPI:
    """The API over `instance` (default: DAGSTER_HOME's) with `token` (default: MAINTENANCE_API_TOKEN)."""
    from trading_maintenance.runtime_env import load_project_env
    from trading_maintenance.settings import load_settings

    load_project_env()
    if instance is None:
        from trading_maintenance.instance import open_instance

        instance, _ = open_instance()
    ctx = ApiContext(instance=instance, settings=settings or load_settings(),
                     token=token if token is not None else os.environ.get(TOKEN_ENV) or None)
    app = FastAPI(title="trading-maintenance", version="1", summary="Maintenance runs, health and schedules over Dagster")
    app.state.ctx = ctx
    protected = [Depends(require_token)]
    app.include_router(pages.router)
    for module in (tasks, runs, schedules, reports):
        app.include_router(module.router, dependencies=protected)
    _install_error_handlers(app, ctx)
    app.router.add_event_handler("shutdown", ctx.close)
    return app


def _error(status_code: int, message: str, valid: list[str] | None = None) -> JSONResponse:
    body = {"message": message}
    if valid is not None:
        body["valid"] = valid
    return JSONResponse(body, status_code=status_code)


def _field_errors(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def _install_error_handlers(app: FastAPI, ctx: ApiContext) -> None:
    @app.exception_handler(ApiProblem)
    async def problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return _error(exc.status_code, exc.message, exc.valid)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _field_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return _error(exc.status_code, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        detail = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "", ctx.settings.secret_values())
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, detail)
        return _error(500, f"internal error while serving {request.url.path}: {type(exc).__name__}: {detail[:300]}")
