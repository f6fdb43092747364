"""Values configured as secrets are found and redacted wherever they appear, whatever they look like."""

import dagster as dg

from trading_maintenance.core.security import findings, scan
from trading_maintenance.core.security.rules import is_placeholder
from trading_maintenance.definitions import defs
from trading_maintenance.settings import load_settings
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.security.samples import latest_audit_report

UNUSED_PORTS = {"redis": 1, "postgresql": 2, "dagster_webserver": 4}
# Each looks like a placeholder or has low entropy, so no pattern rule would report it.
BROKER_KEY = "PKEXAMPLE0000000000X"
BROKER_SECRET = "your-secret-key-goes-here-1"
SMTP_PASSWORD = "changeme-mail"
REDIS_PASSWORD = "dummy-redis-pw"
WEBHOOK = "https://alerts.internal.example/hook/xxxx-team-ops"
BACKUP_KEY = "backup-key-placeholder-9"
SERVICE_PASSWORD = "svc-pass-<none>"


def _config(tmp_path, data_dir, redis_url):
    host = redis_url.split("://", 1)[1]
    return write_config(
        tmp_path,
        data_dir,
        broker={"api_key": BROKER_KEY, "secret_key": BROKER_SECRET, "base_url": "http://127.0.0.1:1"},
        notifications={"smtp_password": SMTP_PASSWORD, "webhook_url": WEBHOOK},
        backup={"encryption_key": BACKUP_KEY, "drill_redis_url": f"redis://:{REDIS_PASSWORD}@{host}"},
        services=[{"name": "risk_manager", "url": f"http://ops:{SERVICE_PASSWORD}@127.0.0.1:1/health"}],
        security={"service_ports": UNUSED_PORTS, "check_broker_key": False, "redact": True},
    )


SECRETS = [BROKER_KEY, BROKER_SECRET, SMTP_PASSWORD, REDIS_PASSWORD, WEBHOOK, BACKUP_KEY, SERVICE_PASSWORD]


def test_the_configured_values_look_like_placeholders_to_the_rules():
    assert all(is_placeholder(value) for value in (BROKER_KEY, BROKER_SECRET, SMTP_PASSWORD, REDIS_PASSWORD, WEBHOOK, BACKUP_KEY))


def test_every_configured_secret_is_found_and_redacted_by_the_audit(tmp_path, data_dir, make_resources, redis_url):
    config = _config(tmp_path, data_dir, redis_url)
    assert set(SECRETS) <= set(load_settings(config, environ={}).secret_values())
    logs = data_dir / "logs"
    logs.mkdir()
    lines = [f"2024-05-01 10:00:{i:02d} INFO value={value} sent" for i, value in enumerate(SECRETS)]
    lines.append("2024-05-01 10:01:00 INFO api_key=<your-api-key> (template, not configured)")
    (logs / "broker.log.1").write_text("\n".join(lines) + "\n")

    with dg.instance_for_test() as instance:
        defs.resolve_job_def("security_audit_job").execute_in_process(
            resources=make_resources(config=config), instance=instance, raise_on_error=False
        )
        secrets = latest_audit_report(data_dir)["secrets"]
    configured = [f for f in secrets["findings"] if f["rule"] == "configured-secret"]
    assert sorted(f["line"] for f in configured) == list(range(1, len(SECRETS) + 1))
    assert {f["masked"] for f in configured} == {findings.mask(v) for v in SECRETS}
    assert all(f["line"] != len(lines) for f in secrets["findings"])  # the template line is no finding
    assert [r["done"] for r in secrets["redactions"]] == [True]
    text = (logs / "broker.log.1").read_text()
    for value in SECRETS:
        assert value not in text
    assert text.splitlines()[-1] == lines[-1]


def test_a_configured_secret_wins_over_the_generic_rule_and_is_counted_once(tmp_path):
    path = tmp_path / "app.log.1"
    path.write_text(f"ALPACA_SECRET_KEY={BROKER_SECRET} and again {BROKER_SECRET}\n")
    result = scan.SecretScanner(known_secrets=[BROKER_SECRET]).scan_file(path)
    assert [(f.rule, f.column) for f in result.findings] == [("configured-secret", 19), ("configured-secret", 19 + len(BROKER_SECRET) + 11)]
    assert scan.SecretScanner().scan_file(path).findings == []  # without the configuration: a placeholder
