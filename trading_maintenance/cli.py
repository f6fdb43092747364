"""`trading-maintenance`: status, running tasks, history, schedules, demo platform.

Runs started here are Dagster runs in the same instance as the UI's (DAGSTER_HOME), with the same
logs and metadata; history and schedules are read from Dagster's storage.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import warnings

import click
import yaml
from rich.console import Console
from rich.table import Table

from trading_maintenance.settings import PROJECT_ROOT, SettingsError, load_settings

console = Console()
err_console = Console(stderr=True)

EXIT_USAGE = 2
EXIT_FAILED = 1


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME as an absolute, existing folder holding the project's dagster.yaml.

    Unset means `<project>/.dagster_home`. The instance file is rendered from the repository's
    dagster.yaml with MAX_CONCURRENT_TASKS and TASK_TIMEOUT_MINUTES from settings, so the run queue
    and run monitoring follow the configuration.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    template = PROJECT_ROOT / "dagster.yaml"
    if template.exists() and (not target.exists() or _rendered_by_us(target)):
        target.write_text(render_instance_yaml(template.read_text()))
    return home


def _rendered_by_us(path: Path) -> bool:
    return path.read_text().startswith(RENDERED_MARKER)


RENDERED_MARKER = "# rendered by trading-maintenance from the repository's dagster.yaml"


def render_instance_yaml(template: str, settings=None) -> str:
    settings = settings or load_settings()
    config = yaml.safe_load(template) or {}
    config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = settings.tasks.max_concurrent_tasks
    monitoring = config.setdefault("run_monitoring", {})
    monitoring["enabled"] = True
    monitoring["max_runtime_seconds"] = settings.tasks.task_timeout_minutes * 60
    return RENDERED_MARKER + "; edit that file, not this one\n" + yaml.safe_dump(config, sort_keys=False)


def _load_defs():
    from trading_maintenance.definitions import defs

    return defs


def _instance():
    from dagster import DagsterInstance

    ensure_dagster_home()
    return DagsterInstance.get()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trading-maintenance")
def cli() -> None:
    """Maintenance for an automated trading platform, on Dagster."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(as_json: bool) -> None:
    """Latest health, recent runs and the state of schedules and sensors."""
    from dagster import AssetKey, RunsFilter

    instance = _instance()
    settings = load_settings()
    event = instance.get_latest_materialization_event(AssetKey("system_health"))
    health = None
    if event and event.asset_materialization:
        md = event.asset_materialization.metadata
        health = {
            "score": md["health_score"].value if "health_score" in md else None,
            "status": md["health_status"].value if "health_status" in md else None,
            "checked_at": datetime.fromtimestamp(event.timestamp, timezone.utc).isoformat(),
            "run_id": event.run_id,
        }
    records = instance.get_run_records(RunsFilter(), limit=10)
    runs = [
        {"run_id": r.dagster_run.run_id[:8], "job": r.dagster_run.job_name, "status": r.dagster_run.status.value,
         "started": _fmt_ts(r.start_time), "ended": _fmt_ts(r.end_time)}
        for r in records
    ]
    if as_json:
        click.echo(json.dumps({"health": health, "recent_runs": runs, "data_dir": str(settings.data_dir)}, indent=2))
        return
    if health:
        colour = {"green": "green", "yellow": "yellow", "red": "red"}.get(health["status"], "white")
        console.print(f"Health: [{colour}]{health['score']} ({health['status']})[/] at {health['checked_at']}")
    else:
        console.print("Health: no health check recorded yet (run: trading-maintenance maintenance run --task system_health_check)")
    console.print(f"Data root: {settings.data_dir}   Dagster home: {os.environ['DAGSTER_HOME']}")
    table = Table(title="Recent runs")
    for col in ("run_id", "job", "status", "started", "ended"):
        table.add_column(col)
    for run in runs:
        table.add_row(*(str(run[c] or "") for c in ("run_id", "job", "status", "started", "ended")))
    console.print(table)


def _fmt_ts(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


@cli.group()
def maintenance() -> None:
    """Run maintenance tasks and read their history."""


def _default_partition(kind: str, settings) -> str:
    from datetime import timedelta

    from trading_maintenance.core.market_hours import trading_days

    today = datetime.now(timezone.utc).date()
    if kind == "monthly":
        first = today.replace(day=1)
        previous = first - timedelta(days=1)
        return previous.replace(day=1).isoformat()
    days = trading_days(today - timedelta(days=10), today, settings.maintenance.scheduling.market_calendar)
    return days[-1].isoformat()


def run_task(task_name: str, verbose: bool = False, partition: str | None = None, dry_run: bool = False) -> bool:
    """Execute one task as a Dagster run in the configured instance; True when the run succeeded."""
    from trading_maintenance.tasks import resolve_task

    task = resolve_task(task_name)
    defs = _load_defs()
    try:
        job = defs.resolve_job_def(task.job_name)
    except Exception:  # noqa: BLE001 - a missing job is a usage problem, named below
        raise click.UsageError(f"task {task.name!r} maps to job {task.job_name!r}, which this installation does not define")
    instance = _instance()
    settings = load_settings()
    kwargs = {}
    if task.partitioned:
        kwargs["partition_key"] = partition or _default_partition(task.partitioned, settings)
    run_config = _dry_run_config(job) if dry_run else {}
    if not verbose:
        # Quiet terminal: the run's full event log stays in Dagster (UI, `--verbose`); failures are summarised below.
        run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    started = time.perf_counter()
    with console.status(f"running {task.name} ({task.job_name})" + (f" partition {kwargs['partition_key']}" if kwargs else "")):
        result = job.execute_in_process(
            instance=instance,
            run_config=run_config,
            tags={"maintenance/trigger": "cli"},
            raise_on_error=False,
            **kwargs,
        )
    elapsed = time.perf_counter() - started
    colour = "green" if result.success else "red"
    console.print(f"[{colour}]{task.name}: {'succeeded' if result.success else 'FAILED'}[/] in {elapsed:.1f}s  run {result.run_id}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.event_specific_data is not None:
                error = getattr(event.event_specific_data, "error", None)
                if error is not None:
                    err_console.print(f"  {event.step_key or ''}: {error.message.strip().splitlines()[0]}")
    return result.success


def _dry_run_config(job) -> dict:
    """Set dry_run on every op of the job whose config has it."""
    ops = {}
    for node in job.graph.node_dict.values():
        config_field = node.definition.config_field if hasattr(node.definition, "config_field") else None
        if config_field is not None and "dry_run" in getattr(config_field.config_type, "fields", {}):
            ops[node.name] = {"config": {"dry_run": True}}
    return {"ops": ops} if ops else {}


@maintenance.command("run")
@click.option("--task", "task_name", required=True, help="task name (see `maintenance schedule`)")
@click.option("--verbose", is_flag=True, help="show Dagster's event log while running")
@click.option("--partition", help="partition key for partitioned tasks (YYYY-MM-DD)")
@click.option("--dry-run", is_flag=True, help="report what would change without changing anything")
def maintenance_run(task_name: str, verbose: bool, partition: str | None, dry_run: bool) -> None:
    """Run one maintenance task now, as a Dagster run."""
    from trading_maintenance.tasks import resolve_task, valid_task_names

    try:
        resolve_task(task_name)
    except KeyError:
        err_console.print(f"error: unknown task {task_name!r}. Valid tasks: {', '.join(valid_task_names())}")
        sys.exit(EXIT_USAGE)
    ok = run_task(task_name, verbose=verbose, partition=partition, dry_run=dry_run)
    sys.exit(0 if ok else EXIT_FAILED)


@maintenance.command("run-all")
@click.option("--verbose", is_flag=True)
@click.option("--dry-run", is_flag=True)
def maintenance_run_all(verbose: bool, dry_run: bool) -> None:
    """Run every defined maintenance task once, in order; exit 1 if any failed."""
    from trading_maintenance.tasks import TASKS

    defs = _load_defs()
    failed = []
    for task in TASKS.values():
        if not task.in_run_all:
            continue
        try:
            defs.resolve_job_def(task.job_name)
        except Exception:  # noqa: BLE001
            console.print(f"[yellow]{task.name}: skipped (job {task.job_name} not defined)[/]")
            continue
        if not run_task(task.name, verbose=verbose, dry_run=dry_run):
            failed.append(task.name)
    if failed:
        err_console.print(f"failed: {', '.join(failed)}")
        sys.exit(EXIT_FAILED)


@maintenance.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--task", "task_name", help="only this task")
@click.option("--json", "as_json", is_flag=True)
def maintenance_history(limit: int, task_name: str | None, as_json: bool) -> None:
    """Past runs from Dagster's storage (CLI, UI and schedule runs alike)."""
    from dagster import RunsFilter

    from trading_maintenance.tasks import resolve_task

    instance = _instance()
    filters = RunsFilter()
    if task_name:
        try:
            filters = RunsFilter(job_name=resolve_task(task_name).job_name)
        except KeyError:
            err_console.print(f"error: unknown task {task_name!r}")
            sys.exit(EXIT_USAGE)
    records = instance.get_run_records(filters, limit=limit)
    rows = []
    for record in records:
        run = record.dagster_run
        duration = (record.end_time - record.start_time) if record.end_time and record.start_time else None
        rows.append(
            {
                "run_id": run.run_id,
                "job": run.job_name,
                "task": run.tags.get("maintenance/task", ""),
                "status": run.status.value,
                "trigger": run.tags.get("maintenance/trigger") or ("schedule" if "dagster/schedule_name" in run.tags else "sensor" if "dagster/sensor_name" in run.tags else "ui/other"),
                "started": _fmt_ts(record.start_time),
                "duration_s": round(duration, 1) if duration is not None else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Last {len(rows)} runs")
    for col in ("run_id", "task", "status", "trigger", "started", "duration_s"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["run_id"][:8], row["task"] or row["job"], row["status"], row["trigger"], row["started"], str(row["duration_s"] or ""))
    console.print(table)


@maintenance.command("schedule")
@click.option("--json", "as_json", is_flag=True)
def maintenance_schedule(as_json: bool) -> None:
    """Schedules and sensors with their cron, time zone, next tick and state in the instance."""
    from dagster._core.scheduler.instigation import InstigatorStatus

    defs = _load_defs()
    instance = _instance()
    repo = defs.get_repository_def()
    rows = []
    for schedule in repo.schedule_defs:
        state = _instigator_state(instance, schedule.name)
        status = state.status.value if state else schedule.default_status.value
        next_tick = ""
        try:
            from dagster._utils.schedules import cron_string_iterator

            it = cron_string_iterator(time.time(), schedule.cron_schedule, schedule.execution_timezone or "UTC")
            next_tick = next(it).isoformat()
        except Exception:  # noqa: BLE001
            pass
        rows.append({"name": schedule.name, "kind": "schedule", "job": schedule.job_name, "cron": schedule.cron_schedule,
                     "timezone": schedule.execution_timezone, "status": status, "next_tick": next_tick, "description": schedule.description})
    for sensor in repo.sensor_defs:
        state = _instigator_state(instance, sensor.name)
        status = state.status.value if state else sensor.default_status.value
        rows.append({"name": sensor.name, "kind": "sensor", "job": ", ".join(j.name for j in sensor.jobs) if sensor.has_jobs else "",
                     "cron": f"every {sensor.minimum_interval_seconds}s", "timezone": "", "status": status, "next_tick": "", "description": sensor.description})
    del InstigatorStatus
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="Schedules and sensors")
    for col in ("name", "kind", "cron", "timezone", "status", "next_tick"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in ("name", "kind", "cron", "timezone", "status", "next_tick")))
    console.print(table)


def _instigator_state(instance, name: str):
    for state in instance.all_instigator_state():
        if state.name == name:
            return state
    return None


@cli.group()
def demo() -> None:
    """A realistic demo platform in the data root."""


@demo.command("seed")
@click.option("--symbols", default=8, show_default=True, type=click.IntRange(1, 500))
@click.option("--days", default=120, show_default=True, type=click.IntRange(1, 2000), help="calendar days of history")
@click.option("--seed", "seed", default=42, show_default=True, type=int)
@click.option("--big-log", is_flag=True, help="also write one log over 100 MB")
@click.option("--if-empty", is_flag=True, help="do nothing when the data root already holds market data")
def demo_seed(symbols: int, days: int, seed: int, big_log: bool, if_empty: bool) -> None:
    """Create daily parquet market data, logs, temp/export files, database rows and Redis state.

    Only into demo stores: the embedded defaults, or a REDIS_URL/DATABASE_URL named exactly in
    TRADING_DEMO_ALLOW_URL (space-separated) while empty, or a store the demo marked before."""
    from trading_maintenance.demo.seed import ALLOW_URL_ENV, DemoStoreRefused, seed_platform
    from trading_maintenance.resources import build_resources

    settings = load_settings()
    if if_empty and settings.market_data_dir.exists() and any(settings.market_data_dir.iterdir()):
        console.print(f"data root {settings.data_dir} already holds market data; not seeding")
        return
    resources = build_resources(settings)
    redis_resource = resources["redis"]
    db_resource = resources["trading_db"]
    redis_url = os.environ.get("REDIS_URL", redis_resource.url if isinstance(redis_resource.url, str) else "")
    database_url = os.environ.get("DATABASE_URL", db_resource.url if isinstance(db_resource.url, str) else "")
    from trading_maintenance.resources.database import database_engine
    from trading_maintenance.resources.redis import redis_client

    allowed = set(os.environ.get(ALLOW_URL_ENV, "").split())
    try:
        with console.status("seeding the demo platform"):
            summary = seed_platform(
                settings.data_dir,
                redis_client(redis_url, settings.data_dir),
                database_engine(database_url, settings.data_dir),
                symbols=symbols,
                days=days,
                seed=seed,
                big_log=big_log,
                redis_takeable=not redis_url or redis_url in allowed,
                database_takeable=not database_url or database_url in allowed,
            )
    except DemoStoreRefused as exc:
        console.print(str(exc), style="yellow" if if_empty else "red", markup=False, highlight=False)
        sys.exit(0 if if_empty else EXIT_FAILED)
    for key, value in summary.items():
        console.print(f"  {key}: {value}")


@demo.command("services")
def demo_services() -> None:
    """Answer GET /health for every configured platform service (loopback only) until interrupted."""
    from trading_maintenance.demo.services import start_demo_services

    settings = load_settings()
    busy: list[str] = []
    servers = start_demo_services({s.name: s.url for s in settings.services}, busy)
    for url in busy:
        console.print(f"[yellow]{url}: port already in use; leaving it to what answers there[/]")
    if not servers:
        return
    console.print(f"serving /health for {len(servers)} services")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for server in servers:
            server.shutdown()


@cli.command("init")
def init_home() -> None:
    """Create DAGSTER_HOME with the instance configuration rendered from settings."""
    home = ensure_dagster_home()
    console.print(f"DAGSTER_HOME={home}")


def _load_extensions(group: click.Group) -> None:
    import trading_maintenance.cli_ext as ext

    for module in sorted(pkgutil.iter_modules(ext.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"trading_maintenance.cli_ext.{module.name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(group)


_load_extensions(cli)


def main() -> None:
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*(beta|superseded|preview).*")
    try:
        cli(standalone_mode=True)
    except SettingsError as exc:
        err_console.print(f"configuration error: {exc}")
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()

