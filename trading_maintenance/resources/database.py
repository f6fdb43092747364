"""The trading database through SQLAlchemy: PostgreSQL at DATABASE_URL, or an embedded SQLite file."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from trading_maintenance.core.common.masking import mask_text, mask_url
from trading_maintenance.core.database.session_options import (  # noqa: F401 - re-exported
    DEFAULT_LOCK_TIMEOUT_MS,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    postgres_session_options,
)
from trading_maintenance.core.trading import schema as trading_schema
from trading_maintenance.resources.store_errors import DatabaseUnavailable, DatabaseUrlInvalid

_engines: dict[tuple, Engine] = {}
_lock = threading.Lock()


def embedded_database_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "db" / "trading.db"


def check_database_url(url: str) -> None:
    """DatabaseUrlInvalid, naming the setting but not the value, when SQLAlchemy cannot use the URL."""
    try:
        make_url(url).get_dialect()
    except (ArgumentError, ValueError, TypeError, ImportError) as exc:
        # SQLAlchemy quotes the offending part, which may be a piece of a mistyped password.
        reason = mask_text(re.sub(r"'[^']*'", "'***'", f"{type(exc).__name__}: {exc}"))
        raise DatabaseUrlInvalid(
            f"database.url / DATABASE_URL is not a usable database URL ({reason}); "
            "expected postgresql://user:password@host:5432/dbname"
        ) from None


def explain_unreachable(engine: Engine, url: str) -> None:
    """A failed connection raises DatabaseUnavailable naming the server, never the password."""
    parsed = make_url(url)
    secrets = [parsed.password] if parsed.password else []
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"

    @event.listens_for(engine, "handle_error")
    def _unreachable(context) -> None:
        if context.connection is None or context.is_disconnect:
            original = context.original_exception
            reason = mask_text(f"{type(original).__name__}: {str(original).strip()}", secrets)
            raise DatabaseUnavailable(
                f"database at {where} (database.url / DATABASE_URL) is unreachable: {reason[:500]}", original
            ) from None


def database_engine(url: str, data_dir: str | Path, pool_size: int = 5, lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
                    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS) -> Engine:
    """One engine per target per process. SQLite gets the trading file attached as schema `trading`.

    PostgreSQL sessions carry lock_timeout and statement_timeout from the moment they connect."""
    key = (url, str(Path(data_dir).resolve()) if not url else "", pool_size, lock_timeout_ms, statement_timeout_ms)
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        if url and not url.startswith("sqlite"):
            check_database_url(url)
            engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5, "options": postgres_session_options(lock_timeout_ms, statement_timeout_ms)}
                if url.startswith("postgres") else {},
            )
            explain_unreachable(engine, url)
        else:
            trading_file = embedded_database_path(data_dir) if not url else Path(url.split("///", 1)[1])
            trading_file.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine("sqlite://", connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _attach(dbapi_connection, _record, _file=str(trading_file)):
                cursor = dbapi_connection.cursor()
                cursor.execute("ATTACH DATABASE ? AS trading", (_file,))
                cursor.execute("PRAGMA trading.journal_mode=WAL")
                cursor.close()

        _engines[key] = engine
        return engine


def ensure_trading_schema(engine: Engine) -> None:
    """Create schema `trading` and the contract's tables when missing (never alters existing ones)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS trading"))
    trading_schema.metadata.create_all(engine, checkfirst=True)


class TradingDatabaseResource(dg.ConfigurableResource):
    """The platform's trading database (orders, fills, positions, daily performance).

    Leave `url` empty to use an embedded SQLite file under the data root holding the same tables.
    """

    url: str = Field(default="", description="postgresql://user:pass@host:5432/db; empty = embedded SQLite")
    data_dir: str = Field(default="data", description="data root; the embedded SQLite file lives in db/")
    pool_size: int = Field(default=5, description="connection pool size (DATABASE_POOL_SIZE)")
    lock_timeout_ms: int = Field(default=DEFAULT_LOCK_TIMEOUT_MS, ge=1, description="PostgreSQL lock_timeout of every session")
    statement_timeout_ms: int = Field(default=DEFAULT_STATEMENT_TIMEOUT_MS, ge=1, description="PostgreSQL statement_timeout of every session")

    def get_engine(self) -> Engine:
        return database_engine(self.url, self.data_dir, self.pool_size, self.lock_timeout_ms, self.statement_timeout_ms)

    @property
    def dialect(self) -> str:
        return self.get_engine().dialect.name

    def ensure_schema(self) -> None:
        ensure_trading_schema(self.get_engine())

    def describe(self) -> str:
        return mask_url(self.url) if self.url else f"embedded SQLite ({embedded_database_path(self.data_dir)})"


def settings_trading_engine(settings) -> Engine:
    """The trading database the settings name (the embedded one when none is)."""
    url = settings.database.url.get_secret_value() if settings.database.url else ""
    return database_engine(url, settings.data_dir, settings.database.pool_size)
