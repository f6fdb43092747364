"""Security audit: ops over core/security (secrets scan, permissions, exposure, SARIF), its job and schedule.

Secret values never leave core/security's scanning modules: what flows between these ops (and into the IO
manager's storage, run logs, metadata, reports and alerts) is masked values and fingerprints.
"""

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg

from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.core.security import exposure as exp
from trading_maintenance.core.security import permissions as perm
from trading_maintenance.core.security.report import alerts_for, build_report, sarif_for
from trading_maintenance.core.security.secret_audit import run_secret_scan
from trading_maintenance.defs.common import conclude, markdown_table, record_dry_run_plan
from trading_maintenance.defs.platform import PLATFORM_CONFIGURATION, PLATFORM_LOGS
from trading_maintenance.defs.task import OWNERS, MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource, TradingDatabaseResource
from trading_maintenance.resources.broker import AlpacaClient, BrokerError
from trading_maintenance.settings import config_file_holds_secrets

SECURITY_AUDIT = MaintenanceTask(
    "security_audit",
    "Security audit: secrets in logs (masked, baselined, SARIF), owner-only permissions, API key age and acceptance, exposed services.",
)
TASK = SECURITY_AUDIT.name
SECURITY_AUDIT_ASSET = dg.AssetKey("security_audit_report")



class SecurityAuditConfig(dg.Config):
    dry_run: bool = False  # report what redaction and permission fixes would do; change nothing
    redact: bool | None = None  # None: security.redact from the settings
    fix: bool | None = None  # None: security.fix_permissions from the settings
    update_baseline: bool = False  # accept every current finding (written unless dry_run)
    send_alerts: bool = True


# ---------------------------------------------------------------------------------------------
# secrets in logs


def scan_log_secrets(context, cfg, config: SecurityAuditConfig) -> dict:
    """Logs (rotated and gzipped too) and other configured folders scanned for secrets; rotated logs optionally redacted."""
    result = run_secret_scan(cfg, config.dry_run, config.redact, config.update_baseline, context.log)
    context.log.info(
        f"secret scan: {result['files_scanned']} files, {result['bytes_scanned'] / 1e6:.1f} MB in {result['seconds']}s; "
        f"{result['active']} active, {result['baselined']} baselined, {result['allowed']} allowed"
    )
    return result


# ---------------------------------------------------------------------------------------------
# permissions


def run_permissions_check(cfg, config: SecurityAuditConfig, files_with_secrets: list[str]) -> dict:
    security = cfg.security
    root = Path(cfg.data_dir)
    paths = perm.collect_sensitive_paths(
        root,
        config_path=Path(cfg.config_path) if cfg.config_path else None,
        backups_dir=cfg.backups_dir,
        extra_roots=[Path(p) for p in security.extra_sensitive_roots],
        files_with_secrets=[root / p for p in files_with_secrets],
        config_holds_secrets=config_file_holds_secrets(cfg.config_path) if cfg.config_path else True,
    )
    findings, errors = perm.check_permissions(paths)
    fix = security.fix_permissions if config.fix is None else config.fix
    fixes = perm.fix_permissions(findings, dry_run=config.dry_run) if fix else []
    remaining = findings
    if fix and not config.dry_run:
        remaining, _ = perm.check_permissions({Path(f.path): f.reason for f in findings})
    return {
        "checked": len(paths),
        "findings": [f.as_dict() for f in findings],
        "remaining": [f.as_dict() for f in remaining],
        "fixes": [f.as_dict() for f in fixes],
        "fix_failures": sum(1 for f in fixes if f.error),
        "errors": errors,
    }


def check_file_permissions(context, cfg, config: SecurityAuditConfig, secrets: dict) -> dict:
    """Sensitive files (.env, config, backups, keys, files holding secrets) must be owner-only; optionally tightened."""
    result = run_permissions_check(cfg, config, secrets.get("files_with_secrets", []))
    for fix in result["fixes"]:
        verb = "would chmod" if config.dry_run else "chmod"
        context.log.info(f"{verb} {fix['path']} {fix['old_mode']} -> {fix['new_mode']}" + (f" ({fix['error']})" if fix["error"] else ""))
    context.log.info(f"permissions: {result['checked']} sensitive paths, {len(result['findings'])} too open, {len(result['remaining'])} remaining")
    return result


# ---------------------------------------------------------------------------------------------
# API keys


def broker_key_status(base_url: str, api_key: str, secret_key: str, timeout: float) -> tuple[int | None, str]:
    """(HTTP status, error) of a read-only GET /v2/account with the configured key."""
    client = AlpacaClient(base_url, api_key, secret_key, timeout_seconds=timeout, max_retries=0)
    try:
        client.get_account()
        return 200, ""
    except BrokerError as exc:
        return exc.status, mask_text(str(exc), [api_key, secret_key])[:200]
    finally:
        client.close()


def run_key_checks(cfg, today: date | None = None) -> dict:
    security = cfg.security
    today = today or datetime.now(timezone.utc).date()
    keys = [k.model_dump() for k in security.api_keys]
    findings = exp.key_age_findings(keys, today, security.max_key_age_days)
    broker = cfg.broker
    checked = False
    if security.check_broker_key and broker.api_key and broker.secret_key:
        name = next((k["name"] for k in keys if k.get("env_var") in ("ALPACA_API_KEY", "APCA_API_KEY_ID")), "broker")
        api_key, secret_key = broker.api_key.get_secret_value(), broker.secret_key.get_secret_value()
        status, error = broker_key_status(broker.base_url, api_key, secret_key, broker.timeout_seconds)
        findings.append(exp.key_acceptance_finding(name, status, mask_text(error, [api_key, secret_key])))
        checked = True
    return {"findings": [f.as_dict() for f in findings], "broker_checked": checked, "keys_configured": len(keys)}


def check_api_keys(context, cfg) -> dict:
    """Age of each configured API key against its maximum; whether the broker still accepts the key (read-only)."""
    result = run_key_checks(cfg)
    for f in result["findings"]:
        (context.log.warning if f["severity"] != "info" else context.log.info)(f["message"])
    return result


# ---------------------------------------------------------------------------------------------
# exposed services


def local_listeners() -> tuple[list[exp.Listener], str]:
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError) as exc:
        return [], type(exc).__name__
    out = []
    for listener in exp.listeners_from_psutil(conns):
        name = ""
        if listener.pid:
            try:
                name = psutil.Process(listener.pid).name()
            except (psutil.Error, OSError):
                name = ""
        out.append(exp.Listener(listener.ip, listener.port, listener.pid, name))
    return out, ""


def redis_facts(client) -> tuple[dict | None, bool | None, str]:
    """CONFIG GET of the settings that matter (the password itself is reduced to 'set or not')."""
    try:
        raw = {}
        for key in ("requirepass", "protected-mode", "bind", "port"):
            got = client.config_get(key)
            value = got.get(key, got.get(key.encode(), "")) if isinstance(got, dict) else ""
            raw[key] = value.decode() if isinstance(value, bytes) else str(value)
        config = {**raw, "requirepass": "set" if raw.get("requirepass") else ""}
    except Exception as exc:  # noqa: BLE001 - CONFIG may be renamed or forbidden
        return None, None, type(exc).__name__
    nopass = None
    try:
        user = client.acl_getuser("default") or {}
        flags = [f.decode() if isinstance(f, bytes) else f for f in user.get("flags", [])]
        nopass = "nopass" in flags and "on" in flags
    except Exception:  # noqa: BLE001 - older Redis without ACL
        nopass = None
    return config, nopass, ""


def postgres_facts(engine) -> tuple[dict | None, str]:
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return None, f"{engine.dialect.name}: embedded, no network listener"
    try:
        with engine.connect() as conn:
            listen = conn.execute(text("SHOW listen_addresses")).scalar() or ""
            ssl = conn.execute(text("SHOW ssl")).scalar() or "off"
            try:
                hba_query = text("SELECT type, database, user_name, address, netmask, auth_method FROM pg_hba_file_rules WHERE error IS NULL")
                rows = conn.execute(hba_query).mappings().all()
                hba = [{k: (list(v) if isinstance(v, list) else v) for k, v in dict(r).items()} for r in rows]
                hba_error = ""
            except Exception as exc:  # noqa: BLE001 - needs superuser or pg_read_all_settings
                hba, hba_error = None, type(exc).__name__
        return {"listen_addresses": listen, "ssl": ssl, "hba_rules": hba, "hba_error": hba_error}, ""
    except Exception as exc:  # noqa: BLE001
        return None, type(exc).__name__


def assess_exposure(
    ports: dict[str, int], listeners: list, redis_cfg, redis_nopass, redis_error: str, pg: dict | None, pg_error: str
) -> list[exp.ExposureFinding]:
    findings = exp.exposed_listeners(listeners, ports)
    redis_exposed = any(f.service == "redis" for f in findings)
    if redis_cfg is not None and str(redis_cfg.get("port", "")) == "0":
        pass  # unix socket only (embedded server): nothing listens on the network
    else:
        findings += exp.redis_findings(redis_cfg, redis_nopass, redis_exposed, redis_error)
    if pg is not None:
        findings += exp.postgres_findings(pg["listen_addresses"], pg["ssl"], pg["hba_rules"], pg.get("hba_error", ""))
    elif pg_error and "embedded" not in pg_error:
        findings.append(exp.ExposureFinding("postgres-settings-unreadable", "postgresql", "info", f"could not read PostgreSQL settings ({pg_error})"))
    return findings


def check_exposed_services(context, cfg, redis_client, engine) -> dict:
    """Listening sockets of Redis, PostgreSQL and the Dagster webserver beyond loopback; Redis auth and protected mode; PostgreSQL TLS."""
    listeners, listen_error = local_listeners()
    redis_cfg, nopass, redis_error = redis_facts(redis_client)
    pg, pg_error = postgres_facts(engine)
    findings = assess_exposure(dict(cfg.security.service_ports), listeners, redis_cfg, nopass, redis_error, pg, pg_error)
    for f in findings:
        (context.log.warning if f.severity != "info" else context.log.info)(f.message)
    return {
        "listeners": len(listeners),
        "listen_error": listen_error,
        "findings": [f.as_dict() for f in findings],
        "postgres": {k: v for k, v in (pg or {}).items() if k != "hba_rules"} or pg_error,
    }


# ---------------------------------------------------------------------------------------------
# the audit


@dg.asset(
    key=SECURITY_AUDIT_ASSET,
    deps=[PLATFORM_LOGS, PLATFORM_CONFIGURATION],
    group_name="security",
    kinds={"python", "json"},
    owners=OWNERS,
    pool=SECURITY_AUDIT.pool,
    # weekly: a week and a day without an audit means the schedule or the daemon has stopped
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8)),
    output_required=False,  # a dry run records its plan, not an audit
    description="The weekly security audit's JSON and SARIF reports under reports/security/: secrets leaked into "
    "logs, files readable beyond their owner, old or rejected API keys, services listening beyond loopback. "
    "Plots show critical findings over time; a critical finding fails the run and alerts.",
)
def security_audit_report(
    context: dg.AssetExecutionContext,
    config: SecurityAuditConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    alerts: AlertsResource,
):
    cfg = settings.get()
    client = redis.get_client()
    secrets = scan_log_secrets(context, cfg, config)
    permissions = check_file_permissions(context, cfg, config, secrets)
    keys = check_api_keys(context, cfg)
    exposure = check_exposed_services(context, cfg, client, trading_db.get_engine())
    report = build_report(context.run_id, config.dry_run, secrets, permissions, keys, exposure)
    json_path, sarif_path = write_report_files(cfg, report)
    summary = {
        "status": report["status"], "run_id": context.run_id, "dry_run": config.dry_run,
        "critical_findings": report["critical_findings"], "critical_by_part": report["critical_by_part"],
        "warnings": report["warnings"], "secrets_active": secrets["active"], "secrets_baselined": secrets["baselined"],
        "files_scanned": secrets["files_scanned"], "bytes_scanned": secrets["bytes_scanned"],
        "permission_problems": len(permissions["remaining"]), "action_failures": report["action_failures"],
        "report_json": str(json_path), "report_sarif": str(sarif_path),
    }
    raised = alerts_for(report) if config.send_alerts else []
    if config.dry_run:
        would_redact = [r for r in secrets["redactions"] if r["secrets_masked"]]
        record_dry_run_plan(
            context,
            SECURITY_AUDIT_ASSET,
            {"redact_files": len(would_redact), "fix_permissions": len(permissions["fixes"]),
             "report_findings": report["critical_findings"] + report["warnings"]},
            [f"redact {r['path']} ({r['secrets_masked']} secrets)" for r in would_redact]
            + [f"chmod {f['path']} {f['old_mode']} -> {f['new_mode']}" for f in permissions["fixes"]],
            where=str(json_path),
        )
    else:
        yield dg.Output(summary, metadata=report_metadata(report, raised, json_path, sarif_path))
    failure = ""
    if report["status"] == "failed":
        failure = (f"security audit found {report['critical_findings']} critical finding(s) and "
                   f"{report['action_failures']} failed action(s); see {json_path.name}")
    conclude(context, client, TASK, summary, alerts=alerts, alert=raised, failure=failure,
             failure_metadata={"critical_by_part": dg.MetadataValue.json(report["critical_by_part"]),
                               "report_json": dg.MetadataValue.path(str(json_path))})


def write_report_files(cfg, report: dict) -> tuple[Path, Path]:
    """The JSON and SARIF reports, owner-only, under reports/security/ (a dry run's is its whole plan)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = cfg.reports_dir / "security"
    json_path = atomic_write_text(out_dir / f"security_audit_{stamp}.json", json.dumps(report, indent=1, default=str) + "\n", mode=0o600)
    sarif_path = atomic_write_text(out_dir / f"security_audit_{stamp}.sarif", json.dumps(sarif_for(report, Path(cfg.data_dir)), indent=1) + "\n", mode=0o600)
    os.chmod(out_dir, 0o700)
    return json_path, sarif_path


def report_metadata(report: dict, raised: list, json_path: Path, sarif_path: Path) -> dict:
    secrets, permissions = report["secrets"], report["permissions"]
    secret_rows = [
        {"file": f["path"], "line": f["line"], "rule": f["rule"], "masked": f["masked"], "fingerprint": f["fingerprint"][:12], "status": f["status"]}
        for f in secrets["findings"]
    ]
    perm_rows = [
        {"path": f["path"], "mode": f["mode"], "problem": f["problem"], "severity": f["severity"], "fix": f["fixed_mode"]} for f in permissions["findings"]
    ]
    other_rows = [
        {"check": f["check"], "severity": f["severity"], "message": f["message"]} for f in report["keys"]["findings"] + report["exposure"]["findings"]
    ]
    return {
        "status": dg.MetadataValue.text(report["status"]),
        "critical_findings": dg.MetadataValue.int(report["critical_findings"]),
        "warnings": dg.MetadataValue.int(report["warnings"]),
        "secrets_active": dg.MetadataValue.int(secrets["active"]),
        "secrets_baselined": dg.MetadataValue.int(secrets["baselined"]),
        "secrets_allowed": dg.MetadataValue.int(secrets["allowed"]),
        "files_scanned": dg.MetadataValue.int(secrets["files_scanned"]),
        "bytes_scanned": dg.MetadataValue.int(secrets["bytes_scanned"]),
        "scan_mb_per_second": dg.MetadataValue.float(float(secrets["mb_per_second"] or 0.0)),
        "permission_problems": dg.MetadataValue.int(len(permissions["remaining"])),
        "alerts_raised": dg.MetadataValue.int(len(raised)),
        "report_json": dg.MetadataValue.path(str(json_path)),
        "report_sarif": dg.MetadataValue.path(str(sarif_path)),
        "secrets": dg.MetadataValue.md(markdown_table(secret_rows)),
        "permissions": dg.MetadataValue.md(markdown_table(perm_rows)),
        "keys_and_services": dg.MetadataValue.md(markdown_table(other_rows)),
    }


security_audit_job = SECURITY_AUDIT.asset_job("security_audit_job", selection=[SECURITY_AUDIT_ASSET])
security_audit_schedule = SECURITY_AUDIT.schedule(security_audit_job)
