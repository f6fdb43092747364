"""Alerts to a local HTTP server (Slack and webhook) and a local SMTP server (aiosmtpd)."""

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.resources import AlertsResource


class _Recorder(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_):
        return


@pytest.fixture
def http_sink():
    handler = type("Sink", (_Recorder,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_sink():
    mailbox = _Mailbox()
    port = _closed_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alert(key="health:disk", severity="critical") -> Alert:
    return Alert(key=key, severity=severity, title="disk is red", message="disk 97% >= critical 95%", details={"health_score": 41})


def test_slack_webhook_and_email_receive_the_alert(http_sink, smtp_sink, data_dir, redis_client):
    base, handler = http_sink
    smtp_port, mailbox = smtp_sink
    alerts = AlertsResource(
        slack_webhook_url=f"{base}/services/T000/B000/XXXXSECRET",
        webhook_url=f"{base}/hook",
        email_enabled=True,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        email_to=["desk@example.com"],
        data_dir=str(data_dir),
    )
    dispatch = alerts.send(_alert(), redis_client)
    assert dispatch.sent and dispatch.channels == {"redis_list": "ok", "slack": "ok", "webhook": "ok", "email": "ok"}
    paths = {path: body for path, body in handler.received}
    slack = paths["/services/T000/B000/XXXXSECRET"]
    assert "disk is red" in slack["text"] and slack["blocks"][0]["type"] == "section"
    hook = paths["/hook"]
    assert hook["event"] == "trading_maintenance.alert" and hook["severity"] == "critical" and hook["key"] == "health:disk"
    assert len(mailbox.messages) == 1
    mail = mailbox.messages[0].content.decode()
    assert "Subject: [CRITICAL] disk is red" in mail and "desk@example.com" in mailbox.messages[0].rcpt_tos
    listed = json.loads(redis_client.lindex("maintenance:alerts", 0))
    assert listed["title"] == "disk is red"


def test_failing_channels_are_reported_not_raised(http_sink, data_dir):
    base, handler = http_sink
    handler.status = 500
    alerts = AlertsResource(
        webhook_url=f"{base}/hook",
        slack_webhook_url=f"http://127.0.0.1:{_closed_port()}/services/x",
        email_enabled=True,
        smtp_host="127.0.0.1",
        smtp_port=_closed_port(),
        email_to=["a@example.com"],
        data_dir=str(data_dir),
    )
    dispatch = alerts.send(_alert())
    assert dispatch.sent
    assert dispatch.channels["webhook"] == f"failed: HTTP 500 from {base}/hook"
    assert dispatch.channels["slack"].startswith("failed: ConnectError")
    assert dispatch.channels["email"].startswith("failed:")
    assert sorted(dispatch.failed_channels) == ["email", "slack", "webhook"]


def test_cooldown_survives_a_restart_and_expires(http_sink, data_dir):
    base, handler = http_sink
    now = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)
    first = AlertsResource(webhook_url=f"{base}/hook", cooldown_minutes=30, data_dir=str(data_dir))
    assert first.send(_alert(), now=now).sent
    restarted = AlertsResource(webhook_url=f"{base}/hook", cooldown_minutes=30, data_dir=str(data_dir))
    again = restarted.send(_alert(), now=now + timedelta(minutes=29))
    assert not again.sent and again.suppressed_until == (now + timedelta(minutes=30)).isoformat()
    assert restarted.send(_alert("health:redis"), now=now + timedelta(minutes=29)).sent  # per key
    assert restarted.send(_alert(), now=now + timedelta(minutes=30)).sent
    assert [body["key"] for _, body in handler.received] == ["health:disk", "health:redis", "health:disk"]


def test_secrets_are_masked_in_what_is_sent(http_sink, data_dir):
    base, handler = http_sink
    alerts = AlertsResource(webhook_url=f"{base}/hook?token=abcdef123456", data_dir=str(data_dir))
    alert = Alert(key="k", severity="warning", title="db down", message="cannot reach postgresql://trader:s3cretpw@db:5432/trading",
                  details={"url": f"{base}/hook?token=abcdef123456"})
    alerts.send(alert)
    sent = json.dumps(handler.received[0][1])
    assert "s3cretpw" not in sent and "abcdef123456" not in sent and "trader:***@db" in sent


def test_notifications_disabled_still_lists_the_alert(data_dir, redis_client):
    dispatch = AlertsResource(enabled=False, webhook_url="http://127.0.0.1:9/x", data_dir=str(data_dir)).send(_alert(), redis_client)
    assert dispatch.channels == {"redis_list": "ok", "notifications": "disabled"}
    assert redis_client.llen("maintenance:alerts") == 1


def test_unknown_severity_is_rejected():
    with pytest.raises(ValueError, match="severity"):
        Alert(key="k", severity="fatal", title="t", message="m")
