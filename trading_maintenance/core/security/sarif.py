"""SARIF 2.1.0 output, so GitHub code scanning and other SARIF readers show the audit's findings.

Only masked values and fingerprints go in; a suppressed (baselined or inline-allowed) finding is
kept with a `suppressions` entry, as the spec intends, instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "trading-maintenance-security-audit"
_LEVEL = {"critical": "error", "warning": "warning", "info": "note"}


def sarif_report(
    rules: Iterable[dict],
    results: Iterable[dict],
    root: str | Path,
    tool_version: str = "1.0.0",
) -> dict:
    """Build a SARIF log.

    rules: {id, name, description, severity, tags}; results: {rule, message, severity, path (relative
    to root, optional), line, column, fingerprint, status}.
    """
    rule_list = list(rules)
    index = {r["id"]: i for i, r in enumerate(rule_list)}
    sarif_rules = [
        {
            "id": r["id"],
            "name": r.get("name", r["id"]),
            "shortDescription": {"text": r.get("name", r["id"])},
            "fullDescription": {"text": r.get("description", r.get("name", r["id"]))},
            "help": {"text": r.get("help", r.get("description", ""))},
            "defaultConfiguration": {"level": _LEVEL.get(r.get("severity", "warning"), "warning")},
            "properties": {"tags": ["security", *r.get("tags", [])]},
        }
        for r in rule_list
    ]
    sarif_results = []
    for res in results:
        entry: dict = {
            "ruleId": res["rule"],
            "level": _LEVEL.get(res.get("severity", "warning"), "warning"),
            "message": {"text": res["message"]},
        }
        if res["rule"] in index:
            entry["ruleIndex"] = index[res["rule"]]
        if res.get("path"):
            region = {"startLine": max(1, int(res.get("line") or 1))}
            if res.get("column"):
                region["startColumn"] = int(res["column"])
            entry["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": Path(res["path"]).as_posix(), "uriBaseId": "DATAROOT"},
                        "region": region,
                    }
                }
            ]
        if res.get("fingerprint"):
            entry["partialFingerprints"] = {"secretFingerprint/v1": res["fingerprint"]}
        status = res.get("status", "active")
        if status == "baselined":
            entry["suppressions"] = [{"kind": "external", "justification": "accepted in the security baseline"}]
        elif status == "allowed":
            entry["suppressions"] = [{"kind": "inSource", "justification": "inline allow marker"}]
        sarif_results.append(entry)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": tool_version,
                        "informationUri": "https://github.com/trading-maintenance",
                        "rules": sarif_rules,
                    }
                },
                "originalUriBaseIds": {"DATAROOT": {"uri": Path(root).resolve().as_uri() + "/"}},
                "results": sarif_results,
            }
        ],
    }


def validate_sarif(doc: dict) -> list[str]:
    """The structural requirements of SARIF 2.1.0 this project relies on; [] when valid."""
    problems = []
    if doc.get("version") != "2.1.0":
        problems.append("version must be 2.1.0")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        return problems + ["runs must be a non-empty list"]
    for run in runs:
        driver = run.get("tool", {}).get("driver", {})
        if not driver.get("name"):
            problems.append("tool.driver.name is required")
        rule_ids = [r.get("id") for r in driver.get("rules", [])]
        for res in run.get("results", []):
            if "message" not in res or "text" not in res["message"]:
                problems.append("result without message.text")
            if res.get("level") not in (None, "none", "note", "warning", "error"):
                problems.append(f"bad level {res.get('level')}")
            if "ruleIndex" in res and rule_ids[res["ruleIndex"]] != res.get("ruleId"):
                problems.append("ruleIndex does not point at ruleId")
            for loc in res.get("locations", []):
                region = loc.get("physicalLocation", {}).get("region", {})
                if region.get("startLine", 1) < 1:
                    problems.append("startLine must be >= 1")
    return problems
