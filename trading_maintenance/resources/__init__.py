"""Resources, bound in one place (`build_resources`) from validated settings.

No secret value is ever part of a resource's configuration (which Dagster stores with every run
and the UI shows): secrets set in the environment are bound with `dg.EnvVar`, so the UI shows the
variable's name; a resource whose configuration would hold a secret written in the config file
(a password, a key, a webhook, a URL with credentials) is bound as a `SettingsBoundResource`,
built at run time from the validated settings, so the UI shows the file and the keys instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.resources.alerts import AlertsResource
from trading_maintenance.resources.broker import AlpacaBrokerResource
from trading_maintenance.resources.database import TradingDatabaseResource
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance.resources.redis import RedisResource
from trading_maintenance.resources.services import PlatformServicesResource
from trading_maintenance.resources.settings import MaintenanceSettingsResource
from trading_maintenance.resources.system import SystemProbeResource
from trading_maintenance.settings import Settings, load_settings

__all__ = [
    "AlertsResource",
    "AlpacaBrokerResource",
    "MaintenanceSettingsResource",
    "PlatformServicesResource",
    "RedisResource",
    "SettingsBoundResource",
    "SystemProbeResource",
    "TradingDatabaseResource",
    "build_resources",
]


class SettingsBoundResource(dg.ConfigurableResource):
    """A resource whose secrets are written in the config file: built when a run starts from the
    validated settings, so its configuration holds where the values come from, never a value."""

    resource_key: str = Field(description="the resource of build_resources this stands for")
    config_path: str = Field(description="the configuration file (MAINTENANCE_CONFIG) it is built from")
    data_dir: str = Field(default="", description="overrides the data root when set")
    secret_keys: list[str] = Field(default_factory=list, description="configuration keys whose secrets it uses (values never shown)")

    def create_resource(self, context) -> dg.ConfigurableResource:
        settings = load_settings(self.config_path or None)
        if self.data_dir:
            settings = settings.model_copy(update={"data_dir": Path(self.data_dir)})
        return _resources(settings, bind_environment=False)[self.resource_key]


def _secret(var: str, value, bind_environment: bool) -> str | dg.EnvVar:
    if bind_environment and os.environ.get(var):
        return dg.EnvVar(var)
    return value.get_secret_value() if value is not None else ""


def _configured_values(resource: dg.ConfigurableResource) -> list[str]:
    """The plain text of every configured value (EnvVar fields hold only a variable's name)."""
    values: list[str] = []

    def collect(value) -> None:
        if isinstance(value, dg.EnvVar):
            return
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(str(key))
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for name in type(resource).model_fields:
        collect(getattr(resource, name))
    return values


def _reveals_secret(resource: dg.ConfigurableResource, secrets: dict[str, str]) -> list[str]:
    """Configuration keys whose secrets the resource's configured values would show."""
    shown = _configured_values(resource)
    found = sorted({key for key, secret in secrets.items() if any(secret in value for value in shown)})
    if not found and any(mask_text(value) != value for value in shown):
        found = ["(a credential in a configured URL)"]
    return found


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource | SettingsBoundResource]:
    """Every resource, bound so that no configured value is a secret (see the module docstring)."""
    resources: dict = _resources(settings, bind_environment=True)
    secrets = settings.configured_secrets()
    for key, resource in list(resources.items()):
        revealed = _reveals_secret(resource, secrets)
        if revealed:
            resources[key] = SettingsBoundResource(
                resource_key=key,
                config_path=str(settings.config_path or ""),
                data_dir=str(settings.data_dir),
                secret_keys=revealed,
            )
    return resources


def _resources(settings: Settings, bind_environment: bool) -> dict[str, dg.ConfigurableResource]:
    def secret(var: str, value) -> str | dg.EnvVar:
        return _secret(var, value, bind_environment)

    data_dir = str(settings.data_dir)
    notifications = settings.notifications
    alerts_cfg = settings.maintenance.alerts
    return {
        "settings": MaintenanceSettingsResource(
            config_path=str(settings.config_path or ""), data_dir=data_dir
        ),
        "redis": RedisResource(
            url=secret("REDIS_URL", settings.redis.url),
            data_dir=data_dir,
            max_connections=settings.redis.max_connections,
        ),
        "trading_db": TradingDatabaseResource(
            url=secret("DATABASE_URL", settings.database.url),
            data_dir=data_dir,
            pool_size=settings.database.pool_size,
            lock_timeout_ms=settings.trading.lock_timeout_ms,
            statement_timeout_ms=settings.trading.statement_timeout_ms,
        ),
        "system_probe": SystemProbeResource(data_dir=data_dir, cpu_sample_seconds=alerts_cfg.cpu_sample_seconds),
        "platform_services": PlatformServicesResource(endpoints={s.name: s.url for s in settings.services}),
        "broker": AlpacaBrokerResource(
            base_url=settings.broker.base_url,
            api_key=secret("ALPACA_API_KEY", settings.broker.api_key),
            secret_key=secret("ALPACA_SECRET_KEY", settings.broker.secret_key),
            timeout_seconds=settings.broker.timeout_seconds,
        ),
        "alerts": AlertsResource(
            enabled=alerts_cfg.enable_notifications,
            slack_webhook_url=secret("SLACK_WEBHOOK_URL", notifications.slack_webhook_url),
            webhook_url=secret("ALERT_WEBHOOK_URL", notifications.webhook_url),
            email_enabled=notifications.email_enabled,
            smtp_host=notifications.smtp_host,
            smtp_port=notifications.smtp_port,
            smtp_username=notifications.smtp_username or "",
            smtp_password=secret("SMTP_PASSWORD", notifications.smtp_password),
            smtp_use_tls=notifications.smtp_use_tls,
            email_from=notifications.email_from,
            email_to=list(notifications.email_to),
            slack_min_severity=notifications.slack_min_severity,
            webhook_min_severity=notifications.webhook_min_severity,
            email_min_severity=notifications.email_min_severity,
            daily_summary_enabled=notifications.daily_summary_enabled,
            cooldown_minutes=notifications.cooldown_minutes,
            timeout_seconds=notifications.timeout_seconds,
            data_dir=data_dir,
        ),
        "object_store": ObjectStoreResource(
            enabled=settings.backup.remote_enabled,
            bucket=settings.backup.s3_bucket or "",
            prefix=settings.backup.s3_prefix,
            endpoint_url=settings.backup.s3_endpoint_url or "",
        ),
    }
