"""Resources, bound in one place (`build_resources`) from validated settings.

Secrets set in the environment are bound with `dg.EnvVar`, so the UI shows the variable's name,
never its value.
"""

from __future__ import annotations

import os

import dagster as dg

from trading_maintenance.resources.alerts import AlertsResource
from trading_maintenance.resources.broker import AlpacaBrokerResource
from trading_maintenance.resources.database import TradingDatabaseResource
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance.resources.redis import RedisResource
from trading_maintenance.resources.services import PlatformServicesResource
from trading_maintenance.resources.settings import MaintenanceSettingsResource
from trading_maintenance.resources.system import SystemProbeResource
from trading_maintenance.settings import Settings

__all__ = [
    "AlertsResource",
    "AlpacaBrokerResource",
    "MaintenanceSettingsResource",
    "PlatformServicesResource",
    "RedisResource",
    "SystemProbeResource",
    "TradingDatabaseResource",
    "build_resources",
]


def _secret(var: str, value) -> str | dg.EnvVar:
    if os.environ.get(var):
        return dg.EnvVar(var)
    return value.get_secret_value() if value is not None else ""


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    data_dir = str(settings.data_dir)
    notifications = settings.notifications
    alerts_cfg = settings.maintenance.alerts
    return {
        "settings": MaintenanceSettingsResource(
            config_path=str(settings.config_path or ""), data_dir=data_dir
        ),
        "redis": RedisResource(
            url=_secret("REDIS_URL", settings.redis.url),
            data_dir=data_dir,
            max_connections=settings.redis.max_connections,
        ),
        "trading_db": TradingDatabaseResource(
            url=_secret("DATABASE_URL", settings.database.url),
            data_dir=data_dir,
            pool_size=settings.database.pool_size,
            lock_timeout_ms=settings.trading.lock_timeout_ms,
            statement_timeout_ms=settings.trading.statement_timeout_ms,
        ),
        "system_probe": SystemProbeResource(data_dir=data_dir, cpu_sample_seconds=alerts_cfg.cpu_sample_seconds),
        "platform_services": PlatformServicesResource(endpoints={s.name: s.url for s in settings.services}),
        "broker": AlpacaBrokerResource(
            base_url=settings.broker.base_url,
            api_key=_secret("ALPACA_API_KEY", settings.broker.api_key),
            secret_key=_secret("ALPACA_SECRET_KEY", settings.broker.secret_key),
            timeout_seconds=settings.broker.timeout_seconds,
        ),
        "alerts": AlertsResource(
            enabled=alerts_cfg.enable_notifications,
            slack_webhook_url=_secret("SLACK_WEBHOOK_URL", notifications.slack_webhook_url),
            webhook_url=_secret("ALERT_WEBHOOK_URL", notifications.webhook_url),
            email_enabled=notifications.email_enabled,
            smtp_host=notifications.smtp_host,
            smtp_port=notifications.smtp_port,
            smtp_username=notifications.smtp_username or "",
            smtp_password=_secret("SMTP_PASSWORD", notifications.smtp_password),
            smtp_use_tls=notifications.smtp_use_tls,
            email_from=notifications.email_from,
            email_to=list(notifications.email_to),
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
