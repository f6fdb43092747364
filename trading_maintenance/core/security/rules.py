"""Secret-detection rules: a pattern, a cheap pre-filter, an entropy floor and placeholder checks.

Each rule has a `regex` (Python `re`, run only where candidates are) whose group ``secret`` is the
value to mask, and a `prefilter` that must occur inside every match of the regex: a pattern in the
syntax Hyperscan, Rust regex and Python `re` share (no look-arounds, no back-references, flags
only as a leading `(?i)`). The scanner's candidate engine runs all pre-filters at once over whole
files and hands only the spans where one occurs to the exact rules.

Documentation examples (`AKIAIOSFODNN7EXAMPLE`, `xoxb-REDACTED`, `api_key=<redacted>`, the jwt.io
token, Slack's `T00000000/B00000000/XXXX...` webhook), public keys and certificates must not match:
the placeholder checks below and per-rule validators reject them.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

ALLOW_MARKERS = ("gitleaks:allow", "pragma: allowlist secret", "security-audit:allow")

# Values seen in vendor documentation: never a finding.
KNOWN_EXAMPLES = frozenset(
    {
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    }
)
_PLACEHOLDER_WORDS = (
    "example", "redacted", "masked", "placeholder", "dummy", "changeme", "your_", "your-", "yourkey",
    "xxxx", "****", "…", "...", "<", ">", "${", "{{", "%s", "%(", "null", "none", "undefined",
)
_PLACEHOLDER_VALUES = frozenset(
    {"password", "passwd", "pass", "secret", "token", "apikey", "api_key", "true", "false", "user", "username", "pwd"}
)


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def is_placeholder(value: str) -> bool:
    """Documentation and template values: `<redacted>`, `${TOKEN}`, `xxxx`, `***`, `EXAMPLE`..."""
    lowered = value.lower()
    if value in KNOWN_EXAMPLES or lowered in _PLACEHOLDER_VALUES:
        return True
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        return True
    if len(set(value)) <= 2:  # "aaaaaaaa", "00000000"
        return True
    return False


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    description: str
    regex: re.Pattern[str]
    prefilter: str
    entropy: float = 0.0
    severity: str = "critical"
    min_length: int = 1
    multiline: bool = False
    validator: Callable[[str, re.Match[str]], bool] | None = None
    tags: tuple[str, ...] = field(default=("secret",))
    literal: bool = False  # matches only known values: no placeholder or entropy check
    literals: tuple[str, ...] = ()  # those values (Latin-1 text), each searched for on its own

    def candidate_patterns(self) -> list[str]:
        """What the candidate search looks for: the pre-filter, or each known value literally."""
        return [literal_pattern(t) for t in self.literals] or [self.prefilter]

    def accepts(self, value: str, match: re.Match[str]) -> bool:
        if self.literal:
            return len(value) >= self.min_length
        if len(value) < self.min_length or is_placeholder(value):
            return False
        if self.entropy and shannon_entropy(value) < self.entropy:
            return False
        if self.validator is not None and not self.validator(value, match):
            return False
        return True


def _has_digit_and_letter(value: str, _m=None) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _jwt_valid(value: str, _m=None) -> bool:
    header = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded and str(decoded.get("alg")).lower() != "none"


def _pem_body_valid(value: str, _m=None) -> bool:
    body = re.sub(r"\\[nr]|\s|^[A-Za-z-]+:.*$", "", value, flags=re.M)
    return len(re.findall(r"[A-Za-z0-9+/=]", body)) >= 64 and shannon_entropy(body) >= 4.5


_SEP = r"""["']?\s*(?::|=>|=)\s*["']?"""
# value characters of a generic assignment: stops at quotes, whitespace, query and JSON delimiters
_VALUE = r"""[^\s"'&,;<>\[\]{}()\\]"""
_GENERIC_KEY = (
    r"(?:api[_-]?key|apikey|secret[_-]?key|client[_-]?secret|secret|access[_-]?token|auth[_-]?token|"
    r"refresh[_-]?token|bearer[_-]?token|token|passw(?:or)?d|pwd|private[_-]?key)"
)
_PASSWORDISH = re.compile(r"(?i)passw|pwd")

RULES: list[Rule] = [
    Rule(
        id="private-key",
        name="PEM private key",
        description="A PEM private key block (also with escaped \\n inside JSON).",
        regex=re.compile(
            r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----(?:\\[nr]|\s)*"
            r"(?P<secret>[A-Za-z0-9+/=:,.-](?:\\[nr]|[\r\n]|[A-Za-z0-9+/=:,. -]){63,16384}?)"
            r"(?:\\[nr]|\s)*-----END (?P=kind)PRIVATE KEY(?: BLOCK)?-----"
        ),
        prefilter=r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY",
        multiline=True,
        validator=_pem_body_valid,
        tags=("secret", "private-key"),
    ),
    Rule(
        id="alpaca-secret-key",
        name="Alpaca API secret key",
        description="An Alpaca secret key, e.g. as the APCA-API-SECRET-KEY header or ALPACA_SECRET_KEY value.",
        regex=re.compile(
            r"(?i:apca[_-]api[_-]secret[_-]key|alpaca[_-]?(?:api[_-]?)?secret(?:[_-]?key)?)" + _SEP
            + r"(?P<secret>[A-Za-z0-9/+]{30,64})(?![A-Za-z0-9/+])"
        ),
        prefilter=r"(?i)(?:apca.api.secret.key|alpaca.?(?:api.?)?secret)",
        entropy=3.5,
    ),
    Rule(
        id="aws-access-key-id",
        name="AWS access key id",
        description="An AWS access key id (AKIA.../ASIA...).",
        regex=re.compile(r"(?<![A-Za-z0-9])(?P<secret>(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})(?![A-Za-z0-9])"),
        prefilter=r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}",
        entropy=3.0,
    ),
    Rule(
        id="alpaca-key-id-header",
        name="Alpaca API key id (header or setting)",
        description="The value of an APCA-API-KEY-ID header or ALPACA_API_KEY setting.",
        regex=re.compile(
            r"(?i:apca[_-]api[_-]key[_-]id|alpaca[_-]?api[_-]?key(?:[_-]?id)?)" + _SEP + r"(?P<secret>[A-Za-z0-9]{16,40})(?![A-Za-z0-9])"
        ),
        prefilter=r"(?i)(?:apca.api.key.id|alpaca.?api.?key)",
        entropy=3.0,
        validator=_has_digit_and_letter,
    ),
    Rule(
        id="alpaca-key-id",
        name="Alpaca API key id",
        description="An Alpaca key id (PK... paper, AK... live), alone or as the APCA-API-KEY-ID header.",
        regex=re.compile(r"(?<![A-Za-z0-9])(?P<secret>(?:PK|AK(?!IA))[A-Z0-9]{18})(?![A-Za-z0-9])"),
        prefilter=r"[PA]K[A-Z0-9]{18}",
        entropy=3.0,
        validator=_has_digit_and_letter,
    ),
    Rule(
        id="aws-secret-access-key",
        name="AWS secret access key",
        description="An AWS secret access key assigned to aws_secret_access_key or similar.",
        regex=re.compile(
            r"(?i:aws[_-]?secret[_-]?(?:access[_-]?)?key|secret[_-]?access[_-]?key)" + _SEP
            + r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        prefilter=r"(?i)(?:aws.?secret|secret.?access.?key)",
        entropy=4.0,
    ),
    Rule(
        id="slack-token",
        name="Slack token",
        description="A Slack bot, user, app or refresh token (xoxb-, xoxp-, xoxa-, xoxe-, xoxr-, xoxs-).",
        regex=re.compile(r"(?<![A-Za-z0-9])(?P<secret>xox[abeprs]-(?:[0-9]+-)+[0-9A-Za-z-]{10,})"),
        prefilter=r"xox[abeprs]-[0-9]",
        entropy=3.0,
    ),
    Rule(
        id="slack-webhook-url",
        name="Slack webhook URL",
        description="A Slack incoming webhook URL (the path is the secret).",
        regex=re.compile(
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]{16,})"
        ),
        prefilter=r"hooks\.slack\.com/",
        entropy=3.5,
        validator=lambda v, m: not re.search(r"0{6}", v),
    ),
    Rule(
        id="github-token",
        name="GitHub token",
        description="A GitHub personal access, OAuth, app or refresh token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).",
        regex=re.compile(
            r"(?<![A-Za-z0-9_])(?P<secret>gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,255})(?![A-Za-z0-9_])"
        ),
        prefilter=r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_",
        entropy=3.5,
    ),
    Rule(
        id="jwt",
        name="JSON Web Token",
        description="A signed JWT (header.payload.signature).",
        regex=re.compile(
            r"(?<![A-Za-z0-9_-])(?P<secret>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,})(?![A-Za-z0-9_-])"
        ),
        prefilter=r"eyJ[A-Za-z0-9_-]{8,}\.eyJ",
        validator=_jwt_valid,
    ),
    Rule(
        id="url-password",
        name="Password in a URL",
        description="A database, Redis, broker or HTTP URL carrying a password (scheme://user:password@host).",
        regex=re.compile(
            r"(?i:[a-z][a-z0-9+.-]{1,20})://[^\s:/@\"']*:(?P<secret>[^\s@/\"'<>]{3,128})@[A-Za-z0-9_.\[\]-]+"
        ),
        prefilter=r"://[^\s:/@]*:[^\s@/]{3,}@",
        min_length=3,
    ),
    Rule(
        id="authorization-header",
        name="Authorization header credential",
        description="A bearer, basic or token credential in an Authorization header.",
        regex=re.compile(r"(?i:authorization)" + _SEP + r"(?i:bearer|basic|token)\s+(?P<secret>[A-Za-z0-9._~+/=-]{16,})"),
        prefilter=r"(?i)authorization",
        entropy=3.0,
    ),
    Rule(
        id="generic-secret",
        name="Secret assignment",
        description="An api_key / secret / token / password assigned in a URL query, JSON, header or key=value line.",
        regex=re.compile(
            r"(?i:(?<![A-Za-z0-9])(?P<key>(?:[A-Za-z0-9]+[_.-])*?" + _GENERIC_KEY + r"))"
            + _SEP + r"(?P<secret>" + _VALUE + r"{6,256})"
        ),
        prefilter=r"(?i)(?:key|secret|token|passw(?:or)?d|pwd)[\x22']?\s*[:=]",
        min_length=6,
        validator=lambda v, m: _generic_ok(v, m),
    ),
]
RULES_BY_ID = {rule.id: rule for rule in RULES}


def _generic_ok(value: str, match: re.Match[str]) -> bool:
    key = match.group("key") or ""
    if value.isdigit() or re.fullmatch(r"\d+(\.\d+)?[smhd]?", value):
        return False
    if _PASSWORDISH.search(key):
        return shannon_entropy(value) >= 2.0
    return len(value) >= 12 and shannon_entropy(value) >= 3.2 and _has_digit_and_letter(value)


CONFIGURED_SECRET_MIN_LENGTH = 4  # shorter values would match everywhere; settings should refuse them


def literal_pattern(text: str) -> str:
    """`text` (Latin-1) as a pattern that Hyperscan, Rust regex and Python `re` all read literally."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{ord(c):02X}" for c in text)


def configured_secret_rule(values) -> Rule | None:
    """A rule matching exactly the values configured as secrets, wherever and however they appear.

    A configured value is a secret even when it looks like a placeholder ("example-key") or has
    little entropy: the configuration says it is one. Values are matched as Latin-1 text of their
    UTF-8 bytes, as the scanner reads files.
    """
    texts = sorted(
        {v.encode("utf-8", "surrogateescape").decode("latin-1") for v in values if v and len(v) >= CONFIGURED_SECRET_MIN_LENGTH},
        key=len,
        reverse=True,
    )
    if not texts:
        return None
    return Rule(
        id="configured-secret",
        name="Configured secret",
        description="A value configured as a secret (broker key, password, webhook URL, backup key...) written in clear.",
        regex=re.compile("(?P<secret>" + "|".join(re.escape(t) for t in texts) + ")"),
        prefilter="|".join(literal_pattern(t) for t in texts),
        literals=tuple(texts),
        min_length=CONFIGURED_SECRET_MIN_LENGTH,
        literal=True,
        tags=("secret", "configured"),
    )


def combined_prefilter(rules: list[Rule] | None = None) -> str:
    """One pattern matching every candidate line of every rule (for the vectorised pass)."""
    return "|".join(f"(?:{rule.prefilter})" for rule in (rules or RULES))
