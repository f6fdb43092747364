"""The security audit's secret scan over the data folders: scan, baseline, redaction, leftovers."""

from __future__ import annotations

import json
import time
from pathlib import Path

from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.security.baseline import apply_baseline, baseline_document, load_baseline
from trading_maintenance.core.security.findings import Finding
from trading_maintenance.core.security.redaction import find_stale_temporaries, redact_file, remove_stale_temporaries
from trading_maintenance.core.security.scan import SecretScanner
from trading_maintenance.core.security.targets import is_rotated, iter_scan_files


def run_secret_scan(cfg, dry_run: bool, redact: bool | None, update_baseline: bool, log) -> dict:
    """The audit's secret scan: every scan folder, baseline applied, rotated logs redacted when asked.

    `redact` None: the settings decide. Redaction temporaries left by crashed audits are removed
    first (only reported on a dry run)."""
    security = cfg.security
    root = Path(cfg.data_dir)
    # Every configured secret is looked for as it is, whatever the rules think of its shape.
    known_secrets = cfg.secret_values()
    scanner = SecretScanner(known_secrets=known_secrets)
    baseline_path = Path(security.baseline_file)
    if not baseline_path.is_absolute():
        baseline_path = root / baseline_path
    accepted, baseline_error = load_baseline(baseline_path)

    stale = remove_stale_temporaries(find_stale_temporaries(root, security.scan_dirs), dry_run)
    for item in stale:
        verb = "would remove" if dry_run else ("removed" if item.removed else "could not remove")
        log.info(f"{verb} {item.path}: {item.reason}" + (f" ({item.error})" if item.error else ""))

    started = time.perf_counter()
    files, errors, skipped = [], [], []
    findings: list[Finding] = []
    total_bytes = 0
    for result in scanner.scan_files(iter_scan_files(root, security.scan_dirs, security.allowlist_paths)):
        rel = result.path
        total_bytes += result.bytes_scanned
        if result.skipped:
            skipped.append({"path": rel, "reason": result.skipped})
            continue
        files.append(rel)
        if result.error:
            errors.append({"path": rel, "error": result.error})
            log.warning(f"{rel}: {result.error} (findings up to the error are kept)")
        findings.extend(result.findings)
    elapsed = time.perf_counter() - started
    findings = apply_baseline(findings, accepted)
    active = [f for f in findings if f.status == "active"]

    baseline_written = False
    if update_baseline and not dry_run:
        doc = baseline_document(active, accepted)
        atomic_write_text(baseline_path, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o600)
        baseline_written = True
        findings = apply_baseline(findings, set(doc["fingerprints"]))
        active = []

    if redact is None:
        redact = security.redact
    redactions = []
    if redact:
        by_file: dict[str, set[str]] = {}
        for f in active:
            by_file.setdefault(f.path, set()).add(f.fingerprint)
        for rel, prints in sorted(by_file.items()):
            path = root / rel
            if not is_rotated(path):
                redactions.append({"path": rel, "secrets_masked": 0, "done": False, "dry_run": dry_run, "error": "", "skipped": "live log: never rewritten"})
                continue
            outcome = redact_file(path, prints, dry_run=dry_run, known_secrets=known_secrets)
            redactions.append(
                {"path": rel, "secrets_masked": outcome.secrets_masked, "done": outcome.done, "dry_run": dry_run, "error": outcome.error, "skipped": ""}
            )
            verb = "would mask" if dry_run else "masked"
            log.info(f"redaction {rel}: {verb} {outcome.secrets_masked} secret(s)" + (f"; {outcome.error}" if outcome.error else ""))
    return {
        "files_scanned": len(files),
        "bytes_scanned": total_bytes,
        "seconds": round(elapsed, 3),
        "mb_per_second": round(total_bytes / 1e6 / elapsed, 1) if elapsed > 0 else None,
        "findings": [f.as_dict() for f in findings],
        "active": len(active),
        "baselined": sum(1 for f in findings if f.status == "baselined"),
        "allowed": sum(1 for f in findings if f.status == "allowed"),
        "files_with_secrets": sorted({f.path for f in active}),
        "errors": errors,
        "skipped": skipped,
        "baseline_file": str(baseline_path),
        "baseline_error": baseline_error,
        "baseline_written": baseline_written,
        "redactions": redactions,
        "redaction_failures": sum(1 for r in redactions if r["error"]) + sum(1 for t in stale if t.error),
        "stale_temporaries": [{"path": t.path, "reason": t.reason, "removed": t.removed, "error": t.error} for t in stale],
    }
