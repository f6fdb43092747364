"""Alert model, channel payloads and the cooldown that keeps one problem from paging every 5 minutes."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

SEVERITIES = ("info", "warning", "critical")
_SLACK_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


@dataclass(frozen=True)
class Alert:
    key: str  # identifies the problem, e.g. "health:redis"; cooldown is per key
    severity: str
    title: str
    message: str
    source: str = "trading-maintenance"
    details: dict = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {SEVERITIES}, got {self.severity!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def severity_at_least(severity: str, minimum: str) -> bool:
    """True when `severity` is `minimum` or more urgent (info < warning < critical)."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


CRITICAL_TASKS = frozenset({"backup", "portfolio_reconciliation"})


def run_failure_alert(task: str, run_id: str, status: str, error_line: str, ui_base_url: str) -> Alert:
    """One alert for a failed or canceled run: the task, the run, its first error line, a link to it.

    A failing backup or reconciliation is critical (money or recoverability is at stake); any other
    task failing is a warning."""
    link = f"{ui_base_url.rstrip('/')}/runs/{run_id}" if ui_base_url else run_id
    verb = "was canceled" if status == "CANCELED" else "failed"
    return Alert(
        key=f"task_failed:{task}",
        severity="critical" if task in CRITICAL_TASKS else "warning",
        title=f"{task} {verb}",
        message=f"{task} run {run_id[:8]} {verb}: {error_line or 'no error message'}",
        details={"task": task, "run_id": run_id, "status": status, "error": error_line, "run_url": link},
    )


def resolution_of(active: dict, message: str) -> Alert:
    """The notice that an active alert's condition cleared, routed like the alert itself."""
    return Alert(
        key=active["key"],
        severity=active.get("severity", "info") if active.get("severity") in SEVERITIES else "info",
        title=f"Resolved: {active.get('title', active['key'])}",
        message=message,
        details={"alerted_at": active.get("created_at", ""), "resolved": "true"},
    )


def slack_payload(alert: Alert) -> dict:
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(alert.details.items())[:10]]
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{_SLACK_EMOJI[alert.severity]} *{alert.title}*\n{alert.message}"}}
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    return {"text": f"[{alert.severity.upper()}] {alert.title}: {alert.message}", "blocks": blocks}


def webhook_payload(alert: Alert) -> dict:
    return {"event": "trading_maintenance.alert", **alert.as_dict()}


def email_message(alert: Alert, sender: str, recipients: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[{alert.severity.upper()}] {alert.title}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    lines = [alert.message, ""] + [f"{k}: {v}" for k, v in alert.details.items()]
    lines += ["", f"key: {alert.key}", f"time: {alert.created_at}", f"source: {alert.source}"]
    msg.set_content("\n".join(lines))
    return msg


class CooldownStore:
    """Last-sent times per alert key in a JSON file under the data root.

    A file, not Redis, because the alert most worth rate-limiting is "Redis is down". Writes are
    atomic (temp file + rename) under an exclusive lock, so concurrent runs never lose an entry.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def last_sent(self, key: str) -> datetime | None:
        value = self._read().get(key)
        return datetime.fromisoformat(value) if value else None

    def forget(self, key: str) -> None:
        """Clear the key's last-sent time (its problem resolved; a recurrence alerts at once)."""
        self._update(lambda data: data.pop(key, None))

    def _update(self, change) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            change(data)
            self._write(data)

    def _write(self, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".cooldown.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def try_acquire(self, key: str, now: datetime, cooldown: timedelta) -> tuple[bool, datetime | None]:
        """Record `now` for key and return (True, previous) unless the key is still cooling down."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            previous = datetime.fromisoformat(data[key]) if key in data else None
            if previous is not None and now - previous < cooldown:
                return False, previous
            data[key] = now.isoformat()
            horizon = now - timedelta(days=7)
            data = {k: v for k, v in data.items() if datetime.fromisoformat(v) >= horizon}
            self._write(data)
            return True, previous
