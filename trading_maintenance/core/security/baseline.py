"""The baseline: fingerprints of accepted findings, so an accepted secret is reported once."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from trading_maintenance.core.security.findings import Finding


def load_baseline(path: str | Path) -> tuple[set[str], str]:
    """Accepted fingerprints; (set, error). A missing file is an empty baseline, a corrupt one is reported."""
    path = Path(path)
    if not path.exists():
        return set(), ""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return set(), f"baseline {path.name} unreadable: {type(exc).__name__}"
    if isinstance(data, dict):
        entries = data.get("fingerprints", data.get("results", []))
    else:
        entries = data
    prints: set[str] = set()
    if isinstance(entries, dict):
        prints.update(str(k) for k in entries)
    elif isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, str):
                prints.add(entry)
            elif isinstance(entry, dict) and "fingerprint" in entry:
                prints.add(str(entry["fingerprint"]))
    return prints, ""


def baseline_document(findings: Iterable[Finding], existing: set[str] | None = None) -> dict:
    """A baseline accepting the given findings (and keeping already accepted fingerprints)."""
    entries: dict[str, dict] = {fp: {} for fp in sorted(existing or set())}
    for f in findings:
        entries[f.fingerprint] = {"rule": f.rule, "masked": f.masked, "first_seen": f"{f.path}:{f.line}"}
    return {"version": 1, "fingerprints": entries}


def apply_baseline(findings: list[Finding], accepted: set[str]) -> list[Finding]:
    out = []
    for f in findings:
        if f.status == "active" and f.fingerprint in accepted:
            f = Finding(**{**f.as_dict(), "status": "baselined"})
        out.append(f)
    return out
