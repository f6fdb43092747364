"""The platform's services, each answering GET /health."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import dagster as dg
from pydantic import Field


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    url: str
    reachable: bool
    healthy: bool
    status_code: int | None
    latency_ms: float | None
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def interpret_health_response(status_code: int, body: object) -> tuple[bool, str]:
    """A 2xx whose JSON (if any) does not say otherwise is healthy."""
    if not 200 <= status_code < 300:
        return False, f"HTTP {status_code}"
    if isinstance(body, dict):
        status = str(body.get("status", "")).lower()
        if status and status not in ("ok", "healthy", "up", "pass", "green"):
            return False, f"reports status {status!r}"
    return True, "ok"


class PlatformServicesResource(dg.ConfigurableResource):
    """Health endpoints of the platform's services (name -> URL)."""

    endpoints: dict[str, str] = Field(default_factory=dict, description="service name -> /health URL")
    timeout_seconds: float = Field(default=3.0, description="per-request timeout")

    def check_all(self) -> list[ServiceHealth]:
        import httpx  # with the first check, not with the definitions

        from trading_maintenance.core.common.masking import mask_url

        results = []
        with httpx.Client(timeout=self.timeout_seconds, follow_redirects=False) as client:
            for name, url in sorted(self.endpoints.items()):
                shown = mask_url(url)  # results are published and logged; a URL may carry credentials
                started = time.perf_counter()
                try:
                    response = client.get(url)
                except httpx.HTTPError as exc:
                    results.append(ServiceHealth(name, shown, False, False, None, None, f"unreachable: {type(exc).__name__}"))
                    continue
                latency = (time.perf_counter() - started) * 1000
                try:
                    body = response.json()
                except ValueError:
                    body = None
                healthy, detail = interpret_health_response(response.status_code, body)
                results.append(ServiceHealth(name, shown, True, healthy, response.status_code, round(latency, 2), detail))
        return results
