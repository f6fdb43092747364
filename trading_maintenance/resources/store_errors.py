"""Errors of the platform's stores that explain themselves wherever they surface.

Each is a `dg.Failure`, so a run that meets one fails with the cause in its message (the CLI and
the UI show it) instead of Dagster's bare "Error occurred while executing op", and also an error
of the store's own library, so code that already catches, retries or reports those keeps working.
Messages are masked by whoever raises them: a URL shows no password, a known secret never appears.
"""

from __future__ import annotations

from functools import cache

import dagster as dg
from sqlalchemy.exc import ArgumentError, OperationalError


class _StoreFailure(dg.Failure):
    def _init_failure(self, description: str, allow_retries: bool) -> None:
        # Failure.__init__ would hand the description to the library exception's __init__ through
        # the MRO; the library part is initialised by the subclass, the Failure part here.
        self.description = description
        self.metadata = {}
        self.allow_retries = allow_retries

    def __str__(self) -> str:
        return self.description or ""


def __getattr__(name: str) -> type:
    # The Redis errors subclass redis-py's: they (and redis-py) load with the first Redis client,
    # not with the definitions.
    if name in ("RedisUrlInvalid", "RedisUnavailable"):
        return _redis_errors()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _redis_errors() -> dict[str, type]:
    import redis

    class RedisUrlInvalid(_StoreFailure, ValueError):
        """REDIS_URL / redis.url cannot be used."""

        def __init__(self, description: str) -> None:
            ValueError.__init__(self, description)
            self._init_failure(description, allow_retries=False)

    class RedisUnavailable(_StoreFailure, redis.exceptions.ConnectionError):
        """Redis could not be reached or refused the connection (authentication, TLS)."""

        def __init__(self, description: str) -> None:
            redis.exceptions.ConnectionError.__init__(self, description)
            self._init_failure(description, allow_retries=True)

    for error in (RedisUrlInvalid, RedisUnavailable):
        error.__module__ = __name__
    return {"RedisUrlInvalid": RedisUrlInvalid, "RedisUnavailable": RedisUnavailable}


class DatabaseUrlInvalid(_StoreFailure, ArgumentError):
    """DATABASE_URL / database.url cannot be used."""

    def __init__(self, description: str) -> None:
        ArgumentError.__init__(self, description)
        self._init_failure(description, allow_retries=False)


class DatabaseUnavailable(_StoreFailure, OperationalError):
    """The trading database could not be reached or refused the connection."""

    def __init__(self, description: str, original: BaseException | None = None) -> None:
        OperationalError.__init__(self, None, None, original or Exception(description))
        self._init_failure(description, allow_retries=True)
