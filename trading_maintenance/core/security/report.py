"""The security audit's report: the parts' findings combined into one verdict, its SARIF 2.1.0 form
and the alerts its critical findings raise. Values are already masked by the parts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.security.rules import RULES
from trading_maintenance.core.security.sarif import sarif_report


def build_report(run_id: str, dry_run: bool, secrets: dict, permissions: dict, keys: dict, exposure: dict) -> dict:
    active = [f for f in secrets["findings"] if f["status"] == "active"]
    critical = {
        "secrets": [f for f in active if f["severity"] == "critical"],
        "permissions": [f for f in permissions["remaining"] if f["severity"] == "critical"],
        "keys": [f for f in keys["findings"] if f["severity"] == "critical"],
        "exposure": [f for f in exposure["findings"] if f["severity"] == "critical"],
    }
    warnings = (
        sum(1 for f in permissions["remaining"] if f["severity"] == "warning")
        + sum(1 for f in keys["findings"] if f["severity"] == "warning")
        + sum(1 for f in exposure["findings"] if f["severity"] == "warning")
    )
    failures = secrets["redaction_failures"] + permissions["fix_failures"]
    status = "failed" if any(critical.values()) or failures else "success"
    return {
        "status": status,
        "run_id": run_id,
        "dry_run": dry_run,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "critical_findings": sum(len(v) for v in critical.values()),
        "critical_by_part": {k: len(v) for k, v in critical.items()},
        "warnings": warnings,
        "action_failures": failures,
        "secrets": secrets,
        "permissions": permissions,
        "keys": keys,
        "exposure": exposure,
    }


def sarif_for(report: dict, root: Path) -> dict:
    rules = [{"id": r.id, "name": r.name, "description": r.description, "severity": r.severity, "tags": list(r.tags)} for r in RULES]
    rules += [
        {
            "id": "file-permissions",
            "name": "Sensitive file not owner-only",
            "description": "A file holding secrets is readable or writable by group or others.",
            "severity": "critical",
            "tags": ["permissions"],
        },
        {
            "id": "api-key",
            "name": "API key age / acceptance",
            "description": "An API key is older than its maximum age or rejected by the broker.",
            "severity": "warning",
            "tags": ["credentials"],
        },
        {
            "id": "exposed-service",
            "name": "Exposed service",
            "description": "Redis, PostgreSQL or the Dagster webserver reachable beyond loopback or without authentication/TLS.",
            "severity": "critical",
            "tags": ["network"],
        },
    ]
    results = [
        {
            "rule": f["rule"], "severity": f["severity"], "path": f["path"], "line": f["line"], "column": f["column"],
            "fingerprint": f["fingerprint"], "status": f["status"],
            "message": f"{f['rule']}: {f['masked']} at {f['path']}:{f['line']}",
        }
        for f in report["secrets"]["findings"]
    ]
    for f in report["permissions"]["remaining"]:
        try:
            rel = str(Path(f["path"]).relative_to(root))
        except ValueError:
            rel = f["path"]
        results.append(
            {
                "rule": "file-permissions",
                "severity": f["severity"],
                "path": rel,
                "line": 1,
                "message": f"{rel} is {f['mode']} ({f['problem']}); expected {f['fixed_mode']} ({f['reason']})",
            }
        )
    for f in report["keys"]["findings"]:
        if f["severity"] != "info":
            results.append({"rule": "api-key", "severity": f["severity"], "message": f["message"]})
    for f in report["exposure"]["findings"]:
        if f["severity"] != "info":
            results.append({"rule": "exposed-service", "severity": f["severity"], "message": f["message"]})
    return sarif_report(rules, results, root)


def alerts_for(report: dict) -> list[Alert]:
    out = []
    titles = {
        "secrets": ("security:secrets", "secrets found in logs"),
        "permissions": ("security:permissions", "sensitive files readable by others"),
        "keys": ("security:keys", "API key problem"),
        "exposure": ("security:exposure", "service exposed"),
    }
    samples = {
        "secrets": lambda f: f"{f['rule']} {f['masked']} at {f['path']}:{f['line']}",
        "permissions": lambda f: f"{f['path']} {f['mode']} ({f['problem']})",
        "keys": lambda f: f["message"],
        "exposure": lambda f: f["message"],
    }
    parts = {
        "secrets": [f for f in report["secrets"]["findings"] if f["status"] == "active" and f["severity"] == "critical"],
        "permissions": [f for f in report["permissions"]["remaining"] if f["severity"] == "critical"],
        "keys": [f for f in report["keys"]["findings"] if f["severity"] == "critical"],
        "exposure": [f for f in report["exposure"]["findings"] if f["severity"] == "critical"],
    }
    for part, items in parts.items():
        if not items:
            continue
        key, title = titles[part]
        out.append(
            Alert(
                key=key,
                severity="critical",
                title=f"security audit: {len(items)} {title}",
                message="; ".join(samples[part](f) for f in items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else ""),
                details={"count": len(items), "report": "reports/security/"},
            )
        )
    return out
