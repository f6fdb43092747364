"""What a secret scan reports: a location, a fingerprint and a masked value, never the secret.

A `Finding` carries a fingerprint (a hash of rule and value), the masked value (a few leading
characters and the length) and the location; the value itself stays in the scanning modules.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    fingerprint: str
    masked: str
    length: int
    severity: str = "critical"
    status: str = "active"  # active / baselined / allowed (inline marker)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileResult:
    path: str
    bytes_scanned: int = 0
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""
    skipped: str = ""


def mask(value: str) -> str:
    """A few leading characters and the length; fewer characters for short values."""
    keep = 4 if len(value) >= 16 else (2 if len(value) >= 8 else 0)
    return f"{value[:keep]}…[{len(value)} chars]"


def fingerprint(rule_id: str, value: str) -> str:
    """Stable across files, lines and rotations: the same secret is one baseline entry."""
    return hashlib.sha256(f"{rule_id}\0{value}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
