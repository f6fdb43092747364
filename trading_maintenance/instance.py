"""The Dagster instance every CLI command uses: DAGSTER_HOME, its rendered dagster.yaml, and opening it.

Rendering the instance file and the first opening of the instance (which creates and migrates its
storage) happen under one file lock in DAGSTER_HOME: two commands started together on a fresh home
would otherwise both stamp the storage and leave it with two migration heads, breaking every later
command.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.settings import PROJECT_ROOT, load_settings

DEFAULT_TEMPLATE = PROJECT_ROOT / "dagster.yaml"
INSTANCE_LOCK_NAME = ".trading-maintenance-instance.lock"
RENDERED_PREFIX = "# rendered by trading-maintenance from "
RENDERED_SUFFIX = "; edit that file, not this one"
_LEGACY_TEMPLATE_NAME = "the repository's dagster.yaml"
_RENAMED_TEMPLATES = {"deploy/dagster.postgres.yaml": "deploy/dagster.yaml"}
# Connection settings Dagster defaults when absent (no password, port 5432): bound to a variable
# that is not set, they are left out of the rendered file, since Dagster refuses an unset variable.
_OPTIONAL_POSTGRES_KEYS = ("password", "port", "params", "scheme")


class InstanceError(Exception):
    """The instance cannot be prepared or opened; the message says where and why."""


@dataclass(frozen=True)
class HomeState:
    home: Path
    template: Path | None  # None: the instance file is the user's own, not rendered from a template
    mismatches: tuple[str, ...] = ()  # where a user's own instance file disagrees with settings


def dagster_home() -> Path:
    """DAGSTER_HOME as an absolute, existing folder (unset: `<project>/.dagster_home`), exported."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@contextmanager
def home_lock(home: Path, name: str = INSTANCE_LOCK_NAME) -> Iterator[None]:
    """An exclusive lock shared by every trading-maintenance process using this DAGSTER_HOME."""
    with open(home / name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def render_instance_yaml(template_text: str, template_path: Path = DEFAULT_TEMPLATE, settings=None) -> str:
    """The template with the run limits of settings: MAX_CONCURRENT_TASKS and TASK_TIMEOUT_MINUTES."""
    settings = settings or load_settings()
    config = yaml.safe_load(template_text) or {}
    if "run_coordinator" in config:
        # Dagster refuses both blocks at once; a legacy coordinator block carries the limit itself.
        config["run_coordinator"].setdefault("config", {})["max_concurrent_runs"] = settings.tasks.max_concurrent_tasks
    else:
        config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = settings.tasks.max_concurrent_tasks
    monitoring = config.setdefault("run_monitoring", {})
    monitoring["enabled"] = True
    monitoring["max_runtime_seconds"] = settings.tasks.task_timeout_minutes * 60
    _drop_unset_optional_postgres_settings(config)
    config["python_logs"] = {**run_log_files(settings), **(config.get("python_logs") or {})}
    return f"{RENDERED_PREFIX}{_display_path(template_path)}{RENDERED_SUFFIX}\n" + yaml.safe_dump(config, sort_keys=False)


def _drop_unset_optional_postgres_settings(config: dict) -> None:
    """`storage: postgres:` and the older per-storage `config:` blocks hold the same connection keys."""
    blocks = [(config.get("storage") or {}).get("postgres")]
    blocks += [(config.get(kind) or {}).get("config") for kind in ("run_storage", "event_log_storage", "schedule_storage")]
    for block in blocks:
        connection = block.get("postgres_db") if isinstance(block, dict) else None
        for key in _OPTIONAL_POSTGRES_KEYS if isinstance(connection, dict) else ():
            value = connection.get(key)
            if isinstance(value, dict) and set(value) == {"env"} and not os.environ.get(str(value["env"])):
                del connection[key]


RUN_LOG_NAME = "maintenance_runner.log"
ERROR_LOG_NAME = "error.log"
RUN_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s - %(message)s"


def run_log_files(settings) -> dict:
    """Dagster's `python_logs`: LOG_LEVEL for its loggers, and every run's log lines also in
    logs/maintenance_runner.log (errors in logs/error.log) under the data root, where the project's
    log rotation rotates them (a watched handler reopens a file rotated away)."""
    logs = Path(settings.logs_dir)

    def handler(name: str, level: str) -> dict:
        return {"class": "logging.handlers.WatchedFileHandler", "level": level, "filename": str(logs / name),
                "formatter": "timestamped", "delay": True}

    return {
        "python_log_level": settings.log_level,
        "dagster_handler_config": {
            "handlers": {"run_log_file": handler(RUN_LOG_NAME, settings.log_level), "error_log_file": handler(ERROR_LOG_NAME, "ERROR")},
            "formatters": {"timestamped": {"format": RUN_LOG_FORMAT}},
        },
    }


def rendered_from(instance_file: Path) -> Path | None:
    """The template an instance file was rendered from; None when a person wrote it."""
    first_line = instance_file.read_text().split("\n", 1)[0]
    if not first_line.startswith(RENDERED_PREFIX):
        return None
    name = re.sub(re.escape(RENDERED_SUFFIX) + "$", "", first_line[len(RENDERED_PREFIX):])
    if name == _LEGACY_TEMPLATE_NAME:
        return DEFAULT_TEMPLATE
    name = _RENAMED_TEMPLATES.get(name, name)
    path = Path(name)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def limit_mismatches(instance_yaml: str, settings=None) -> tuple[str, ...]:
    """Where an instance file's run limits differ from settings, in words a person can act on."""
    settings = settings or load_settings()
    config = yaml.safe_load(instance_yaml) or {}
    runs = ((config.get("concurrency") or {}).get("runs") or {})
    coordinator = ((config.get("run_coordinator") or {}).get("config") or {})
    max_runs = runs.get("max_concurrent_runs", coordinator.get("max_concurrent_runs"))
    monitoring = config.get("run_monitoring") or {}
    found = []
    if max_runs != settings.tasks.max_concurrent_tasks:
        found.append(f"max_concurrent_runs is {max_runs} but MAX_CONCURRENT_TASKS is {settings.tasks.max_concurrent_tasks}")
    runtime = monitoring.get("max_runtime_seconds") if monitoring.get("enabled") else None
    if runtime != settings.tasks.task_timeout_minutes * 60:
        found.append(
            f"run_monitoring max_runtime_seconds is {runtime} but TASK_TIMEOUT_MINUTES is "
            f"{settings.tasks.task_timeout_minutes} ({settings.tasks.task_timeout_minutes * 60} s)"
        )
    return tuple(found)


def prepare_home(template: Path | None = None, replace_own_file: bool = False) -> HomeState:
    """Render the instance file into DAGSTER_HOME under the home lock.

    Without `template`, a file rendered earlier is re-rendered from the template it names (so a
    PostgreSQL instance stays one), and a missing file comes from the repository's dagster.yaml.
    A file a person wrote is left alone and compared with settings; `replace_own_file` (with an
    explicit template) replaces it, keeping the old one beside it.
    """
    home = dagster_home()
    with home_lock(home):
        return _render_locked(home, template, replace_own_file)


def _render_locked(home: Path, template: Path | None, replace_own_file: bool) -> HomeState:
    target = home / "dagster.yaml"
    existing = target.read_text() if target.exists() else None
    source = rendered_from(target) if existing is not None else None
    if existing is not None and source is None and not (template and replace_own_file):
        if template is not None:
            raise InstanceError(f"{target} was written by hand, not rendered by trading-maintenance; "
                                "add --replace to render it from the template (the old file is kept beside it)")
        return HomeState(home, None, limit_mismatches(existing))
    template = (template or source or DEFAULT_TEMPLATE).resolve()
    if not template.is_file():
        raise InstanceError(f"instance template {template} does not exist (named by {target})")
    try:
        rendered = render_instance_yaml(template.read_text(), template)
    except yaml.YAMLError as exc:
        raise InstanceError(f"instance template {template} is not valid YAML: {exc}") from None
    if existing is not None and source is None:
        atomic_write_text(home / f"dagster.yaml.replaced-{int(os.path.getmtime(target))}", existing)
    if rendered != existing:
        atomic_write_text(target, rendered)
    load_settings().logs_dir.mkdir(parents=True, exist_ok=True)  # the run log handlers write there
    return HomeState(home, template)


def open_instance(template: Path | None = None):
    """The DagsterInstance of DAGSTER_HOME, created and migrated by one process at a time.

    Any failure becomes an InstanceError naming DAGSTER_HOME and the cause, never a traceback.
    """
    from dagster import DagsterInstance

    home = dagster_home()
    with home_lock(home):
        state = _render_locked(home, template, replace_own_file=False)
        try:
            instance = DagsterInstance.get()
        except Exception as exc:  # noqa: BLE001 - every cause is reported the same way, named
            raise InstanceError(describe_instance_error(home, exc)) from None
    return instance, state


def describe_instance_error(home: Path, exc: BaseException) -> str:
    detail = mask_text(str(exc).strip().splitlines()[-1] if str(exc).strip() else "")
    hint = ""
    if "more than one head" in str(exc):
        hint = (" The storage was stamped twice by commands that created it at the same time; move "
                f"{home} aside and run `trading-maintenance init` again (its runs are kept in the moved folder).")
    elif "migrat" in str(exc).lower():
        hint = " Run `dagster instance migrate` once with this DAGSTER_HOME."
    return f"cannot open the Dagster instance in DAGSTER_HOME={home}: {type(exc).__name__}: {detail}.{hint}"
