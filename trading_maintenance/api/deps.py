"""Request dependencies: the shared context and the bearer-token check."""

from __future__ import annotations

import hmac

from fastapi import Request

from trading_maintenance.api.context import ApiContext, ApiProblem


async def context(request: Request) -> ApiContext:
    return request.app.state.ctx


async def require_token(request: Request) -> None:
    """Async because it does no I/O: a sync dependency would cost every request a thread-pool hop.

    With MAINTENANCE_API_TOKEN set, every request must carry `Authorization: Bearer <token>`,
    compared in constant time. Without one the server only listens on loopback (see server.py)."""
    expected = request.app.state.ctx.token
    if not expected:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise ApiProblem(401, "missing or wrong bearer token (Authorization: Bearer <MAINTENANCE_API_TOKEN>)")
