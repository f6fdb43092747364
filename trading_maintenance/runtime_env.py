"""The process environment every way in shares: the project's `.env` and the log level.

`.env` at the project root is Dagster's own convention (`dagster dev` and `dg` load it); the CLI and
the API load the same file, so a variable written there by `scripts/start` (the demo broker's URL and
keys) reaches every command. A variable already set in the environment wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trading_maintenance.settings import PROJECT_ROOT

ENV_FILE_VARIABLE = "MAINTENANCE_ENV_FILE"  # another file instead of <project>/.env; empty: none


def env_file_path() -> Path | None:
    chosen = os.environ.get(ENV_FILE_VARIABLE)
    if chosen is None:
        return PROJECT_ROOT / ".env"
    return Path(chosen) if chosen else None


def load_project_env() -> list[str]:
    """Set the variables of the env file that the environment does not set yet; their names."""
    from dotenv import dotenv_values

    path = env_file_path()
    if path is None or not path.is_file():
        return []
    loaded = []
    for name, value in dotenv_values(path).items():
        if value is not None and name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded


APPLIED_LOGGERS = ("trading_maintenance", "dagster")


def apply_log_level(level: str) -> None:
    """LOG_LEVEL for this project's loggers and Dagster's; other libraries stay at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in APPLIED_LOGGERS:
        logging.getLogger(name).setLevel(level)
