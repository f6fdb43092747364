"""PostgreSQL session limits shared by every connection the project opens (engines, admin engines,
pg_restore): a lock held elsewhere or a runaway statement ends the session's wait instead of hanging a task."""

from __future__ import annotations

DEFAULT_LOCK_TIMEOUT_MS = 5000
DEFAULT_STATEMENT_TIMEOUT_MS = 300000


def postgres_session_options(lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
                             statement_timeout_ms: int | None = DEFAULT_STATEMENT_TIMEOUT_MS) -> str:
    """libpq `options` (also PGOPTIONS for the command-line tools); statement_timeout None leaves it
    unset, for a tool whose single statement may legitimately run long (a COPY during pg_restore)."""
    options = f"-c lock_timeout={int(lock_timeout_ms)}"
    if statement_timeout_ms is not None:
        options += f" -c statement_timeout={int(statement_timeout_ms)}"
    return options
