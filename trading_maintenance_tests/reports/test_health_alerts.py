"""Health alerts are active while their component is unhealthy and resolve (with a notice) when it recovers."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.resources import AlertsResource, PlatformServicesResource
from trading_maintenance_tests.conftest import run_asset_job


class _ServiceAndHook(BaseHTTPRequestHandler):
    """GET /health answers `service_status`; POST /hook records the alert it receives."""

    service_status = 503
    received: list = []

    def do_GET(self):  # noqa: N802 - http.server's hook name
        body = json.dumps({"status": "ok" if self.service_status == 200 else "down"}).encode()
        self.send_response(self.service_status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def service_and_hook():
    handler = type("Handler", (_ServiceAndHook,), {"received": [], "service_status": 503})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def _active_keys(redis_client) -> list[str]:
    return [json.loads(raw)["key"] for raw in redis_client.lrange("maintenance:alerts", 0, -1)]


def test_health_alert_active_while_a_service_is_down_and_resolved_when_it_recovers(
        instance, service_and_hook, make_resources, redis_client, data_dir):
    base, handler = service_and_hook
    resources = make_resources(
        platform_services=PlatformServicesResource(endpoints={"broker_api": f"{base}/health"}),
        alerts=AlertsResource(webhook_url=f"{base}/hook", data_dir=str(data_dir), cooldown_minutes=30),
    )

    def check():
        result = run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance)
        assert result.success
        return result

    check()
    assert "health:services" in _active_keys(redis_client)
    sent = [body for body in handler.received if body["key"] == "health:services"]
    assert len(sent) == 1 and "broker_api" in sent[0]["message"] and not sent[0]["title"].startswith("Resolved")

    handler.service_status = 200
    result = check()
    assert "health:services" not in _active_keys(redis_client)
    resolutions = [body for body in handler.received if body["key"] == "health:services" and body["title"].startswith("Resolved")]
    assert len(resolutions) == 1 and resolutions[0]["message"] == "the component is healthy again"
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "health:services" in metadata["alerts_resolved"].value

    handler.service_status = 503
    check()  # down again: alerts at once, the resolution cleared its cooldown
    assert "health:services" in _active_keys(redis_client)
    assert len([b for b in handler.received if b["key"] == "health:services" and not b["title"].startswith("Resolved")]) == 2
