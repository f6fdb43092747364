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
from pydantic import Field

from trading_maintenance.core.common.alerts import (
    SEVERITIES,
    Alert,
    CooldownStore,
    email_message,
    resolution_of,
    severity_at_least,
    slack_payload,
    webhook_payload,
)
from trading_maintenance.core.common.masking import mask_text, mask_url

# The active (unresolved) alerts, one entry per alert key, newest first. A list, so the platform's
# readers (LRANGE) keep working; an alert leaves it when its condition clears.
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
    slack_min_severity: str = Field(default="warning", description="least severe alert Slack receives")
    webhook_min_severity: str = Field(default="info", description="least severe alert the webhook receives")
    email_min_severity: str = Field(default="critical", description="least severe alert email receives")
    daily_summary_enabled: bool = True
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
        safe = Alert(
            key=alert.key,
            severity=alert.severity,
            title=mask_text(alert.title, self._secrets()),
            message=mask_text(alert.message, self._secrets()),
            source=alert.source,
            details={k: mask_text(str(v), self._secrets()) for k, v in alert.details.items()},
            created_at=alert.created_at,
        )
        dispatch = AlertDispatch(alert.key, sent=acquired)
        if not acquired:
            dispatch.suppressed_until = (previous + cooldown).isoformat() if previous else None
        # An info alert is a notice (maintenance completed, a recommendation), not a problem to resolve.
        # A suppressed one still refreshes its active entry: the list shows the problem as last seen,
        # and whoever resolves by age ("raised before this run") sees that it is still raised.
        if redis_client is not None and safe.severity != "info":
            dispatch.channels["redis_list"] = _replace_active(redis_client, safe.key, json.dumps(safe.as_dict()))
        if acquired:
            self._notify(safe, dispatch)
        return dispatch

    def _minimum(self, channel: str) -> str:
        value = getattr(self, f"{channel}_min_severity")
        if value not in SEVERITIES:
            raise ValueError(f"notifications.{channel}_min_severity must be one of {SEVERITIES}, got {value!r}")
        return value

    def _notify(self, alert: Alert, dispatch: AlertDispatch) -> None:
        if not self.enabled:
            dispatch.channels["notifications"] = "disabled"
            return
        channels = [
            ("slack", bool(self.slack_webhook_url), lambda: self._post(self.slack_webhook_url, slack_payload(alert))),
            ("webhook", bool(self.webhook_url), lambda: self._post(self.webhook_url, webhook_payload(alert))),
            ("email", self.email_enabled and bool(self.email_to), lambda: self._email(alert)),
        ]
        for name, configured, deliver in channels:
            if not configured:
                continue
            minimum = self._minimum(name)
            dispatch.channels[name] = deliver() if severity_at_least(alert.severity, minimum) else f"skipped: below {minimum}"

    def active(self, redis_client) -> list[dict]:
        return active_alerts(redis_client)

    def resolve(self, key: str, redis_client, message: str) -> AlertDispatch | None:
        """Remove the active alert `key` and send its resolution; None when it was not active.

        The key's cooldown is cleared, so the problem coming back alerts at once."""
        current = next((a for a in active_alerts(redis_client) if a.get("key") == key), None)
        if current is None:
            return None
        _replace_active(redis_client, key, None)
        self.cooldown_store().forget(key)
        notice = resolution_of(current, mask_text(message, self._secrets()))
        dispatch = AlertDispatch(key, sent=True, channels={"redis_list": "resolved"})
        self._notify(notice, dispatch)
        return dispatch

    def sync(self, prefix: str, firing: list[Alert], redis_client, resolved_message: str = "the condition cleared",
             now: datetime | None = None) -> dict[str, list]:
        """Alerts under `prefix`: send the firing ones, resolve the active ones no longer firing."""
        sent = [self.send(alert, redis_client, now) for alert in firing]
        firing_keys = {alert.key for alert in firing}
        resolved = []
        if redis_client is not None:
            for active in active_alerts(redis_client):
                key = active.get("key", "")
                if key.startswith(prefix) and key not in firing_keys:
                    dispatch = self.resolve(key, redis_client, resolved_message)
                    if dispatch is not None:
                        resolved.append(dispatch)
        return {"sent": sent, "resolved": resolved}

    def send_summary(self, day: str, title: str, text: str, html: str = "", now: datetime | None = None) -> AlertDispatch:
        """The daily summary (email and Slack) with the day's report; once per day whatever re-runs."""
        key = f"daily_summary:{day}"
        dispatch = AlertDispatch(key, sent=False)
        if not (self.enabled and self.daily_summary_enabled):
            dispatch.channels["notifications"] = "disabled"
            return dispatch
        acquired, previous = self.cooldown_store().try_acquire(key, now or datetime.now(timezone.utc), timedelta(hours=20))
        if not acquired:
            dispatch.suppressed_until = (previous + timedelta(hours=20)).isoformat() if previous else None
            return dispatch
        dispatch.sent = True
        summary = Alert(key=key, severity="info", title=mask_text(title, self._secrets()), message=mask_text(text, self._secrets()))
        if self.slack_webhook_url:
            dispatch.channels["slack"] = self._post(self.slack_webhook_url, slack_payload(summary))
        if self.email_enabled and self.email_to:
            dispatch.channels["email"] = self._email(summary, mask_text(html, self._secrets()) if html else "")
        return dispatch

    def _post(self, url: str, payload: dict) -> str:
        import httpx  # with the first request, not with the definitions

        try:
            response = httpx.post(url, json=payload, timeout=self.timeout_seconds)
        except httpx.HTTPError as exc:
            return f"failed: {type(exc).__name__} posting to {mask_url(url)}"
        if response.status_code >= 300:
            return f"failed: HTTP {response.status_code} from {mask_url(url)}"
        return "ok"

    def _email(self, alert: Alert, html: str = "") -> str:
        message = email_message(alert, self.email_from, list(self.email_to))
        if html:
            message.add_alternative(html, subtype="html")
        try:
            with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds) as smtp:
                if self.smtp_use_tls:
                    smtp.starttls()
                if self.smtp_username:
                    smtp.login(self.smtp_username, self.smtp_password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            return f"failed: {type(exc).__name__}: {mask_text(str(exc), self._secrets())}"
        return "ok"


def active_alerts(redis_client) -> list[dict]:
    """The active alerts in `maintenance:alerts`, newest first (unreadable entries skipped)."""
    out = []
    for raw in redis_client.lrange(ALERTS_LIST_KEY, 0, ALERTS_LIST_MAX - 1):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            out.append(entry)
    return out


def _replace_active(redis_client, key: str, payload: str | None) -> str:
    """Drop every entry of `key` and push `payload` (when given) in one transaction."""
    import redis

    try:
        with redis_client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(ALERTS_LIST_KEY)
                    stale = [raw for raw in pipe.lrange(ALERTS_LIST_KEY, 0, -1) if _entry_key(raw) == key]
                    pipe.multi()
                    for raw in stale:
                        pipe.lrem(ALERTS_LIST_KEY, 0, raw)
                    if payload is not None:
                        pipe.lpush(ALERTS_LIST_KEY, payload)
                        pipe.ltrim(ALERTS_LIST_KEY, 0, ALERTS_LIST_MAX - 1)
                    pipe.execute()
                    return "ok"
                except redis.WatchError:
                    continue
    except Exception as exc:  # noqa: BLE001 - a broken channel is reported, never raised
        return f"failed: {type(exc).__name__}"


def _entry_key(raw) -> str | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry.get("key") if isinstance(entry, dict) else None
