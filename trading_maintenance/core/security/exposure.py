"""Exposed services and API-key hygiene, decided from recorded facts (pure functions).

The op gathers the facts (psutil socket list, Redis CONFIG GET, PostgreSQL settings and pg_hba
rules, the broker's answer); these functions turn them into findings, so each rule is tested on
recorded inputs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date

DEFAULT_SERVICE_PORTS = {"redis": 6379, "postgresql": 5432, "dagster_webserver": 3000}
SERVICE_PROCESS_NAMES = {
    "redis": ("redis-server", "redis"),
    "postgresql": ("postgres", "postmaster"),
    "dagster_webserver": ("dagster-webserver", "dagit"),
}


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int
    pid: int | None = None
    process: str = ""


@dataclass
class ExposureFinding:
    check: str  # exposed-listener / redis-no-password / redis-protected-mode-off / postgres-non-local-no-tls / ...
    service: str
    severity: str
    message: str
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def is_loopback(ip: str) -> bool:
    ip = ip.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip in ("localhost",)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def service_of(listener: Listener, ports: dict[str, int]) -> str | None:
    for name, port in ports.items():
        if listener.port == port:
            return name
    proc = listener.process.lower()
    for name, procs in SERVICE_PROCESS_NAMES.items():
        if proc and any(proc == p or proc.startswith(p + ":") for p in procs):
            return name
    return None


def listeners_from_psutil(connections: Iterable) -> list[Listener]:
    """psutil.net_connections(kind='inet') entries in LISTEN state, as Listener records."""
    out = []
    for conn in connections:
        if getattr(conn, "status", "") != "LISTEN" or not conn.laddr:
            continue
        out.append(Listener(ip=conn.laddr.ip, port=int(conn.laddr.port), pid=getattr(conn, "pid", None)))
    return out


def exposed_listeners(listeners: Iterable[Listener], ports: dict[str, int] | None = None) -> list[ExposureFinding]:
    """Redis, PostgreSQL and the Dagster webserver listening on a non-loopback address."""
    ports = ports or DEFAULT_SERVICE_PORTS
    findings: dict[tuple[str, int], ExposureFinding] = {}
    for listener in listeners:
        service = service_of(listener, ports)
        if service is None or is_loopback(listener.ip):
            continue
        all_ifaces = listener.ip in ("0.0.0.0", "::", "")
        key = (service, listener.port)
        where = "all interfaces" if all_ifaces else listener.ip
        if key in findings:
            findings[key].details["addresses"].append(listener.ip)
            continue
        findings[key] = ExposureFinding(
            check="exposed-listener",
            service=service,
            severity="critical" if service == "dagster_webserver" or service == "redis" else "warning",
            message=f"{service} listens on {where} port {listener.port} (not loopback only)",
            details={"addresses": [listener.ip], "port": listener.port, "pid": listener.pid or "", "process": listener.process},
        )
    return list(findings.values())


def redis_findings(config: dict[str, str] | None, default_user_nopass: bool | None, exposed: bool, error: str = "") -> list[ExposureFinding]:
    """Redis without a password or with protected mode off.

    config: CONFIG GET results (requirepass, protected-mode, bind); default_user_nopass: from
    ACL GETUSER default (None when unknown); exposed: the server listens beyond loopback.
    """
    if config is None:
        return [ExposureFinding("redis-config-unreadable", "redis", "info", f"could not read Redis configuration ({error or 'CONFIG disabled'})")]
    findings = []
    no_password = not config.get("requirepass") and default_user_nopass is not False
    bind = config.get("bind", "")
    bind_exposed = exposed or any(not is_loopback(addr.lstrip("-")) for addr in bind.split() if addr and addr != "*" ) or "*" in bind.split()
    if no_password:
        findings.append(
            ExposureFinding(
                "redis-no-password",
                "redis",
                "critical" if bind_exposed else "warning",
                "Redis accepts connections without a password" + (" on a non-loopback address" if bind_exposed else " (loopback only)"),
                {"bind": bind, "exposed": bind_exposed},
            )
        )
    if str(config.get("protected-mode", "yes")).lower() == "no":
        findings.append(
            ExposureFinding(
                "redis-protected-mode-off",
                "redis",
                "critical" if (no_password and bind_exposed) else "warning",
                "Redis protected mode is off",
                {"bind": bind, "password_set": not no_password},
            )
        )
    return findings


def _hba_address_non_local(address: str | None, netmask: str | None = None) -> bool:
    if address in (None, "", "samehost"):
        return address is None or address == ""
    if address in ("all", "samenet"):
        return True
    try:
        if "/" in address:
            net = ipaddress.ip_network(address, strict=False)
        else:
            addr = ipaddress.ip_address(address)
            prefix = bin(int(ipaddress.ip_address(netmask))).count("1") if netmask else addr.max_prefixlen
            net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    except ValueError:
        return True  # a host name: assume it can be remote
    return not (net.network_address.is_loopback and net.broadcast_address.is_loopback)


def postgres_findings(listen_addresses: str, ssl: str, hba_rules: list[dict] | None, error: str = "") -> list[ExposureFinding]:
    """PostgreSQL accepting non-local connections without TLS.

    hba_rules: rows of pg_hba_file_rules (type, address, netmask, auth_method); None when unknown.
    Non-local connections are possible when listen_addresses is beyond loopback; they may be
    unencrypted when a `host`/`hostnossl` rule (not `hostssl`) admits a non-local address, or when
    ssl is off. `trust` for a non-local address is critical on its own.
    """
    listens = [a.strip() for a in (listen_addresses or "").split(",") if a.strip()]
    non_local = any(a == "*" or not is_loopback(a) for a in listens if a != "localhost")
    if not non_local:
        return []
    ssl_on = str(ssl).lower() in ("on", "true", "1")
    findings = []
    if hba_rules is None:
        if not ssl_on:
            findings.append(
                ExposureFinding(
                    "postgres-non-local-no-tls", "postgresql", "critical",
                    f"PostgreSQL listens on {listen_addresses!s} with ssl off (pg_hba rules unreadable{': ' + error if error else ''})",
                    {"listen_addresses": listen_addresses, "ssl": ssl},
                )
            )
        return findings
    plain, trusting = [], []
    for rule in hba_rules:
        kind = str(rule.get("type", ""))
        method = str(rule.get("auth_method", ""))
        if kind not in ("host", "hostnossl", "hostssl") or method == "reject":
            continue
        if not _hba_address_non_local(rule.get("address"), rule.get("netmask")):
            continue
        label = f"{kind} {rule.get('database', '')} {rule.get('user_name', '')} {rule.get('address', '')} {method}".strip()
        if kind in ("host", "hostnossl"):  # `host` admits unencrypted connections too
            plain.append(label)
        if method == "trust" and (kind != "hostssl" or ssl_on):
            trusting.append(label)
    if plain:
        findings.append(
            ExposureFinding(
                "postgres-non-local-no-tls", "postgresql", "critical",
                f"PostgreSQL accepts non-local connections without TLS ({len(plain)} pg_hba rule(s); ssl {'on' if ssl_on else 'off'})",
                {"listen_addresses": listen_addresses, "ssl": ssl, "rules": plain[:10]},
            )
        )
    if trusting:
        findings.append(
            ExposureFinding(
                "postgres-non-local-trust", "postgresql", "critical",
                "PostgreSQL trusts non-local connections without any password",
                {"rules": trusting[:10]},
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# API keys


@dataclass
class KeyFinding:
    name: str
    check: str  # key-age / key-rejected / key-check-failed / key-accepted / key-ok
    severity: str
    message: str
    age_days: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def key_age_findings(keys: Iterable[dict], today: date, default_max_age_days: int) -> list[KeyFinding]:
    """Age of each configured key against its maximum; over the limit is a warning, over twice it critical."""
    out = []
    for key in keys:
        created = key["created"]
        if isinstance(created, str):
            created = date.fromisoformat(created)
        limit = int(key.get("max_age_days") or default_max_age_days)
        age = (today - created).days
        if age > limit:
            severity = "critical" if age > 2 * limit else "warning"
            out.append(KeyFinding(key["name"], "key-age", severity, f"key {key['name']} is {age} days old (maximum {limit}): rotate it", age))
        else:
            out.append(KeyFinding(key["name"], "key-ok", "info", f"key {key['name']} is {age} days old (maximum {limit})", age))
    return out


def key_acceptance_finding(name: str, status: int | None, error: str = "") -> KeyFinding:
    """Decide from the broker's answer to a read-only GET /v2/account: 401/403 means rejected."""
    if status is not None and 200 <= status < 300:
        return KeyFinding(name, "key-accepted", "info", f"broker accepts key {name}")
    if status in (401, 403):
        return KeyFinding(name, "key-rejected", "critical", f"broker rejects key {name} (HTTP {status}): revoked or wrong")
    detail = f"HTTP {status}" if status is not None else (error or "no answer")
    return KeyFinding(name, "key-check-failed", "warning", f"could not check key {name} with the broker ({detail})")
