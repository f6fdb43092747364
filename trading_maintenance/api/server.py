"""Serving the API with uvicorn; without a token it listens on loopback only."""

from __future__ import annotations

import ipaddress
import socket


class UnsafeBind(ValueError):
    """Binding where others can reach the API without a token."""


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def check_bind(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise UnsafeBind(f"--host {host}: without MAINTENANCE_API_TOKEN the API only listens on loopback "
                         "(127.0.0.1, ::1, localhost); set a token to serve other addresses")


def serve(host: str, port: int, token: str | None, log_level: str = "info") -> None:
    """uvicorn on uvloop and httptools (both pinned dependencies; uvicorn's "auto" would quietly fall back
    to asyncio and h11 without them), one process: answers are cached per process and a change made
    through the API forgets them, so a second worker could serve a reader an answer from before its own change."""
    import gc
    import logging
    import sys

    import uvicorn

    from trading_maintenance.api.app import create_app
    from trading_maintenance.api.routes import runs

    check_bind(host, token)
    app = create_app(token=token)
    try:
        runs.warm_up(app.state.ctx)
    except Exception as exc:  # noqa: BLE001 - the requests will meet it and answer it as a JSON error
        logging.getLogger("trading_maintenance.api").warning("warming up the status answer failed: %s", type(exc).__name__)
    # Dagster, FastAPI and pydantic leave ~230,000 long-lived objects; a full collection walking them all
    # stopped every request for ~0.1-0.2 s now and then. Frozen, collections only walk what came later.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False,
                loop="auto" if sys.platform == "win32" else "uvloop", http="httptools")
