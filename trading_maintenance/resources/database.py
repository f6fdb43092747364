"""The trading database through SQLAlchemy: PostgreSQL at DATABASE_URL, or an embedded SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, create_engine, event, text

from trading_maintenance.core import trading_schema
from trading_maintenance.core.masking import mask_url

_engines: dict[tuple, Engine] = {}
_lock = threading.Lock()


def embedded_database_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "db" / "trading.db"


DEFAULT_LOCK_TIMEOUT_MS = 5000
DEFAULT_STATEMENT_TIMEOUT_MS = 300000


def postgres_session_options(lock_timeout_ms: int, statement_timeout_ms: int) -> str:
    """libpq `options` (also PGOPTIONS for pg_dump/pg_restore): every statement of every session waits
    for a lock and runs at most this long, so a lock held elsewhere can never hang a task."""
    return f"-c lock_timeout={int(lock_timeout_ms)} -c statement_timeout={int(statement_timeout_ms)}"


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
            engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5, "options": postgres_session_options(lock_timeout_ms, statement_timeout_ms)}
                if url.startswith("postgres") else {},
            )
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
