"""Permissions on a temporary tree; exposure rules on recorded facts; key age and acceptance."""

import http.server
import os
import threading
from datetime import date
from pathlib import Path

import pytest

from trading_maintenance.core.security import exposure as exp
from trading_maintenance.core.security import permissions as perm
from trading_maintenance.defs.security.ops import assess_exposure, broker_key_status, redis_facts


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_permissions_found_and_fixed_on_a_temporary_tree(tmp_path):
    root = tmp_path / "data"
    (root / "backups" / "2024").mkdir(parents=True)
    (root / "logs").mkdir()
    files = {
        root / ".env": 0o644,  # world-readable: critical
        root / "backups" / "2024" / "db.dump.zst": 0o664,  # group-writable + world-readable
        root / "keys.pem": 0o640,  # group-readable: warning
        root / "ok.key": 0o600,  # fine
        root / "logs" / "app.log.1": 0o644,  # holds a secret (from the scan)
        root / "logs" / "clean.log": 0o644,  # not sensitive
    }
    for path, mode in files.items():
        path.write_text("x")
        os.chmod(path, mode)
    os.chmod(root / "backups", 0o777)
    config = tmp_path / "maintenance.yml"
    config.write_text("data_dir: x\n")
    os.chmod(config, 0o644)

    paths = perm.collect_sensitive_paths(root, config_path=config, backups_dir=root / "backups", files_with_secrets=[root / "logs" / "app.log.1"])
    findings, errors = perm.check_permissions(paths)
    assert errors == []
    by_path = {Path(f.path).name: f for f in findings}
    assert set(by_path) == {".env", "db.dump.zst", "keys.pem", "app.log.1", "maintenance.yml", "backups", "2024"}
    assert by_path[".env"].severity == "critical" and "world-readable" in by_path[".env"].problem
    assert "group-writable" in by_path["db.dump.zst"].problem
    assert by_path["keys.pem"].severity == "warning"
    assert "world-writable" in by_path["backups"].problem

    plan = perm.fix_permissions(findings, dry_run=True)
    assert {Path(f.path).name: f.new_mode for f in plan}[".env"] == "0600"
    assert _mode(root / ".env") == 0o644  # dry run changed nothing

    fixes = perm.fix_permissions(findings, dry_run=False)
    assert all(f.applied and f.verified and not f.error for f in fixes)
    assert _mode(root / ".env") == 0o600 and _mode(root / "backups") == 0o700 and _mode(config) == 0o600
    assert _mode(root / "logs" / "clean.log") == 0o644  # untouched
    assert perm.check_permissions(paths)[0] == []


def test_symlinks_are_not_followed(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("x")
    os.chmod(target, 0o644)
    (tmp_path / ".env").symlink_to(target)
    paths = perm.collect_sensitive_paths(tmp_path)
    assert tmp_path / ".env" not in paths


def test_exposed_listeners_from_recorded_socket_list():
    listeners = [
        exp.Listener("0.0.0.0", 6379, 10, "redis-server"),
        exp.Listener("::", 6379, 10, "redis-server"),
        exp.Listener("127.0.0.1", 5432, 11, "postgres"),
        exp.Listener("::1", 5432, 11, "postgres"),
        exp.Listener("10.1.2.3", 3000, 12, "python3"),
        exp.Listener("0.0.0.0", 22, 1, "sshd"),
        exp.Listener("::ffff:127.0.0.1", 5432, 11, "postgres"),
        exp.Listener("192.168.1.5", 7001, 13, "postgres"),  # postgres on another port, by process name
    ]
    findings = exp.exposed_listeners(listeners)
    got = {(f.service, f.details["port"]): f for f in findings}
    assert set(got) == {("redis", 6379), ("dagster_webserver", 3000), ("postgresql", 7001)}
    assert got[("redis", 6379)].details["addresses"] == ["0.0.0.0", "::"]
    assert got[("redis", 6379)].severity == "critical"
    assert exp.exposed_listeners([exp.Listener("127.0.0.1", 6379)]) == []


@pytest.mark.parametrize(
    "config,nopass,exposed,expected",
    [
        ({"requirepass": "", "protected-mode": "yes", "bind": "127.0.0.1 -::1"}, True, False, {("redis-no-password", "warning")}),
        (
            {"requirepass": "", "protected-mode": "no", "bind": "0.0.0.0"},
            True,
            False,
            {("redis-no-password", "critical"), ("redis-protected-mode-off", "critical")},
        ),
        ({"requirepass": "set", "protected-mode": "yes", "bind": "0.0.0.0"}, False, True, set()),
        ({"requirepass": "set", "protected-mode": "no", "bind": "127.0.0.1"}, False, False, {("redis-protected-mode-off", "warning")}),
        ({"requirepass": "", "protected-mode": "yes", "bind": "127.0.0.1"}, False, False, set()),  # ACL user has a password
    ],
)
def test_redis_rules_on_recorded_settings(config, nopass, exposed, expected):
    assert {(f.check, f.severity) for f in exp.redis_findings(config, nopass, exposed)} == expected


def test_redis_config_unreadable_is_info():
    assert [f.severity for f in exp.redis_findings(None, None, False, "ResponseError")] == ["info"]


def test_postgres_rules_on_recorded_settings():
    local_only = [{"type": "host", "address": "127.0.0.1", "netmask": "255.255.255.255", "auth_method": "scram-sha-256"},
                  {"type": "host", "address": "::1", "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "auth_method": "trust"}]
    assert exp.postgres_findings("localhost", "off", local_only) == []
    assert exp.postgres_findings("*", "off", local_only) == []
    open_rules = local_only + [{"type": "host", "address": "0.0.0.0", "netmask": "0.0.0.0", "auth_method": "md5"}]
    assert {f.check for f in exp.postgres_findings("*", "on", open_rules)} == {"postgres-non-local-no-tls"}
    ssl_only = local_only + [{"type": "hostssl", "address": "10.0.0.0", "netmask": "255.0.0.0", "auth_method": "scram-sha-256"}]
    assert exp.postgres_findings("*", "on", ssl_only) == []
    trust = local_only + [{"type": "hostnossl", "address": "all", "netmask": None, "auth_method": "trust"}]
    assert {f.check for f in exp.postgres_findings("0.0.0.0", "off", trust)} == {"postgres-non-local-no-tls", "postgres-non-local-trust"}
    assert [f.check for f in exp.postgres_findings("*", "off", None, "InsufficientPrivilege")] == ["postgres-non-local-no-tls"]
    assert exp.postgres_findings("*", "on", None) == []


def test_real_local_redis_without_password_is_reported(redis_client):
    config, nopass, error = redis_facts(redis_client)
    if config is None:
        pytest.skip(f"CONFIG not available on this Redis ({error})")
    if config.get("requirepass"):
        pytest.skip("the local Redis has a password")
    assert config["requirepass"] == ""  # reduced to set / not set, never the value
    findings = assess_exposure(exp.DEFAULT_SERVICE_PORTS, [], config, nopass, "", None, "")
    if config.get("port") == "0":  # the embedded fallback: a Unix socket only, unreachable from the network
        assert "redis-no-password" not in {f.check for f in findings}
    else:
        assert "redis-no-password" in {f.check for f in findings}


def test_key_age():
    keys = [
        {"name": "old", "created": "2024-01-01"},
        {"name": "new", "created": date(2025, 5, 1)},
        {"name": "custom", "created": "2025-01-01", "max_age_days": 400},
    ]
    got = {f.name: f for f in exp.key_age_findings(keys, date(2025, 6, 1), 90)}
    assert got["old"].check == "key-age" and got["old"].severity == "critical" and got["old"].age_days == 517
    assert got["new"].check == "key-ok" and got["new"].age_days == 31
    assert got["custom"].check == "key-ok"
    assert exp.key_age_findings([{"name": "w", "created": "2025-01-01"}], date(2025, 4, 15), 90)[0].severity == "warning"


class _Broker(http.server.BaseHTTPRequestHandler):
    good = ("PKTEST1234567890ABCD", "s" * 40)
    seen: list = []

    def do_GET(self):  # noqa: N802
        _Broker.seen.append((self.command, self.path))
        ok = (self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")) == self.good
        body = b'{"cash": "1000", "equity": "1000"}' if ok else b'{"message": "forbidden."}'
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_broker_key_acceptance_against_a_local_http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, _ = broker_key_status(url, *_Broker.good, timeout=5)
        assert exp.key_acceptance_finding("alpaca", status).check == "key-accepted"
        status, error = broker_key_status(url, "PKREVOKED00000000000", "x" * 40, timeout=5)
        finding = exp.key_acceptance_finding("alpaca", status, error)
        assert finding.check == "key-rejected" and finding.severity == "critical"
        assert "PKREVOKED00000000000" not in error
    finally:
        server.shutdown()
        server.server_close()
    assert {m for m, _ in _Broker.seen} == {"GET"} and all(p == "/v2/account" for _, p in _Broker.seen)
    status, error = broker_key_status(url, "a", "b", timeout=1)  # server gone
    assert exp.key_acceptance_finding("alpaca", status, error).check == "key-check-failed"


def test_config_file_world_readable_is_critical_only_when_it_holds_a_secret(tmp_path):
    from trading_maintenance.settings import config_file_holds_secrets

    clean = tmp_path / "clean.yml"
    clean.write_text("redis:\n  url: redis://127.0.0.1:6379/0\nbroker:\n  base_url: https://paper-api.alpaca.markets\n")
    secret = tmp_path / "secret.yml"
    secret.write_text("redis:\n  url: redis://:hunter2@127.0.0.1:6379/0\n")
    keyed = tmp_path / "keyed.yml"
    keyed.write_text("broker:\n  api_key: PKABCDEF123456\n")
    for path in (clean, secret, keyed):
        os.chmod(path, 0o644)
    assert not config_file_holds_secrets(clean)
    assert config_file_holds_secrets(secret) and config_file_holds_secrets(keyed)
    severities = {}
    for path in (clean, secret, keyed):
        paths = perm.collect_sensitive_paths(tmp_path / "nodata", config_path=path, config_holds_secrets=config_file_holds_secrets(path))
        findings, _ = perm.check_permissions(paths)
        severities[path.name] = [f.severity for f in findings]
    assert severities == {"clean.yml": ["warning"], "secret.yml": ["critical"], "keyed.yml": ["critical"]}
    os.chmod(clean, 0o666)  # writable by others is critical even without secrets
    findings, _ = perm.check_permissions(perm.collect_sensitive_paths(tmp_path / "nodata", config_path=clean, config_holds_secrets=False))
    assert [f.severity for f in findings] == ["critical"]
