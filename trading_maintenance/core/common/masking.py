"""Masking secrets before anything is logged, stored as metadata, alerted or raised."""

from __future__ import annotations

import re
from collections.abc import Iterable

# user:password@ in any URL (redis://, postgresql://, https://...); the password runs to the last
# '@' of the authority, so an unencoded '@' inside it is masked too.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/?#\s]+)@")
# Slack incoming-webhook paths carry the secret in the path itself.
_SLACK_HOOK = re.compile(r"(https://hooks\.slack\.com/services/)[A-Za-z0-9/_-]+")
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>api[_-]?key|secret(?:[_-]?key)?|token|password|passwd|apca-api-secret-key|apca-api-key-id)"
    r"(?P<sep>\"?\s*[:=]\s*\"?)(?P<value>[^\s\"'&,;]{4,})"
)


def mask_value(value: str, keep: int = 4) -> str:
    """A few leading characters and the length: enough to recognise a secret, never to use it.

    Short values show fewer characters (none below 8), so a short password is never given away.
    """
    if not value:
        return ""
    keep = min(keep, 4 if len(value) >= 16 else 2 if len(value) >= 8 else 0)
    return f"{value[:keep]}…[{len(value)} chars]"


def mask_url(url: str) -> str:
    """The URL with any password replaced by '***' (user, host and path stay readable)."""
    if not url:
        return url
    masked = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _SLACK_HOOK.sub(r"\1***", masked)


def mask_text(text: str, known_secrets: Iterable[str] = ()) -> str:
    """Mask URL passwords, key=value secrets and every known secret value in free text."""
    if not text:
        return text
    for secret in sorted({s for s in known_secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, mask_value(secret))
    text = mask_url(text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{mask_value(m['value'])}", text)
