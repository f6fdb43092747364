"""Alert channels: Slack incoming webhook, generic JSON webhook and email (SMTP).

A channel that fails is reported in the dispatch result and never raises: an alert must not be
the reason a maintenance run fails.
"""

from __future__ import annotations

import json
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field

from trading_maintenance.core.common.alerts import Alert, CooldownStore, email_message, slack_payload, webhook_payload
from trading_maintenance.core.common.masking import mask_text, mask_url

ALERTS_LIST_KEY = "maintenance:alerts"
ALERTS_LIST_MAX = 1000


@dataclass
class AlertDispatch:
    alert_key: str
    sent: bool
    suppressed_until: str | None = None
    channels: dict[str, str] = field(default_factory=dict)  # channel -> "ok" / "failed: ..." / "disabled"

    @property
    def failed_channels(self) -> list[str]:
        return [c for c, s in self.channels.items() if s.startswith("failed")]


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go and how often: Slack, a JSON webhook, email; a cooldown per alert key."""

    enabled: bool = Field(default=True, description="maintenance.alerts.enable_notifications")
    slack_webhook_url: str = Field(default="", description="Slack incoming webhook URL (secret)")
    webhook_url: str = Field(default="", description="generic webhook receiving a JSON POST (secret)")
    email_enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_use_tls: bool = False
    email_from: str = "trading-maintenance@localhost"
    email_to: list[str] = Field(default_factory=list)
    cooldown_minutes: int = Field(default=30, description="ALERT_COOLDOWN_MINUTES, per alert key")
    timeout_seconds: float = 10.0
    data_dir: str = Field(default="data", description="the cooldown state lives under state/ here")

    def _secrets(self) -> list[str]:
        return [s for s in (self.slack_webhook_url, self.webhook_url, self.smtp_password) if s]

    def cooldown_store(self) -> CooldownStore:
        return CooldownStore(Path(self.data_dir) / "state" / "alert_cooldowns.json")

    def send(self, alert: Alert, redis_client=None, now: datetime | None = None) -> AlertDispatch:
        now = now or datetime.now(timezone.utc)
        cooldown = timedelta(minutes=self.cooldown_minutes)
        acquired, previous = self.cooldown_store().try_acquire(alert.key, now, cooldown)
        if not acquired:
            until = (previous + cooldown).isoformat() if previous else None
            return AlertDispatch(alert.key, sent=False, suppressed_until=until)
        safe = Alert(
            key=alert.key,
            severity=alert.severity,
            title=mask_text(alert.title, self._secrets()),
            message=mask_text(alert.message, self._secrets()),
            source=alert.source,
            details={k: mask_text(str(v), self._secrets()) for k, v in alert.details.items()},
            created_at=alert.created_at,
        )
        dispatch = AlertDispatch(alert.key, sent=True)
        if redis_client is not None:
            try:
                pipe = redis_client.pipeline()
                pipe.lpush(ALERTS_LIST_KEY, json.dumps(safe.as_dict()))
                pipe.ltrim(ALERTS_LIST_KEY, 0, ALERTS_LIST_MAX - 1)
                pipe.execute()
                dispatch.channels["redis_list"] = "ok"
            except Exception as exc:  # noqa: BLE001 - a broken channel is reported, never raised
                dispatch.channels["redis_list"] = f"failed: {type(exc).__name__}"
        if not self.enabled:
            dispatch.channels["notifications"] = "disabled"
            return dispatch
        if self.slack_webhook_url:
            dispatch.channels["slack"] = self._post(self.slack_webhook_url, slack_payload(safe))
        if self.webhook_url:
            dispatch.channels["webhook"] = self._post(self.webhook_url, webhook_payload(safe))
        if self.email_enabled and self.email_to:
            dispatch.channels["email"] = self._email(safe)
        return dispatch

    def _post(self, url: str, payload: dict) -> str:
        try:
            response = httpx.post(url, json=payload, timeout=self.timeout_seconds)
        except httpx.HTTPError as exc:
            return f"failed: {type(exc).__name__} posting to {mask_url(url)}"
        if response.status_code >= 300:
            return f"failed: HTTP {response.status_code} from {mask_url(url)}"
        return "ok"

    def _email(self, alert: Alert) -> str:
        try:
            with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds) as smtp:
                if self.smtp_use_tls:
                    smtp.starttls()
                if self.smtp_username:
                    smtp.login(self.smtp_username, self.smtp_password)
                smtp.send_message(email_message(alert, self.email_from, list(self.email_to)))
        except (OSError, smtplib.SMTPException) as exc:
            return f"failed: {type(exc).__name__}: {mask_text(str(exc), self._secrets())}"
        return "ok"
