"""`trading-maintenance`: status, running tasks, history, schedules, demo platform.

Runs started here are Dagster runs in the same instance as the UI's (DAGSTER_HOME), with the same
logs and metadata; history and schedules are read from Dagster's storage.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from trading_maintenance.instance import InstanceError
from trading_maintenance.settings import SettingsError, load_settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error message stays one greppable line

EXIT_USAGE = 2
EXIT_FAILED = 1


def _load_defs():
    from trading_maintenance.definitions import defs

    return defs


def _instance():
    """The instance of DAGSTER_HOME (rendered and migrated under its lock); a loud warning when the
    instance file is a person's own and its run limits disagree with settings."""
    from trading_maintenance.instance import open_instance

    instance, state = open_instance()
    _warn_limit_mismatches(state)
    return instance


def _warn_limit_mismatches(state) -> None:
    for mismatch in state.mismatches:
        err_console.print(
            f"[bold yellow]warning:[/] {state.home / 'dagster.yaml'} was not rendered by trading-maintenance and {mismatch}; "
            "the run queue and run monitoring follow that file. Render it from settings with "
            "`trading-maintenance init --template TEMPLATE --replace` (the old file is kept beside it)."
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trading-maintenance")
def cli() -> None:
    """Maintenance for an automated trading platform, on Dagster."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(as_json: bool) -> None:
    """Latest health with its reasons, and recent runs (read from the instance, no definitions loaded)."""
    from trading_maintenance.instance_read import latest_health, open_reader, recent_runs

    reader, state = open_reader()
    _warn_limit_mismatches(state)
    settings = load_settings()
    health = latest_health(reader)
    runs = [{**run, "run_id": run["run_id"][:8]} for run in recent_runs(reader, 10)]
    if as_json:
        click.echo(json.dumps({"health": health, "recent_runs": runs, "data_dir": str(settings.data_dir)}, indent=2))
        return
    if health:
        colour = {"green": "green", "yellow": "yellow", "red": "red"}.get(health["status"], "white")
        console.print(f"Health: [{colour}]{health['score']} ({health['status']})[/] at {health['checked_at']}")
        for reason in health["reasons"]:
            console.print(f"  - {reason}", markup=False, highlight=False)
    else:
        console.print("Health: no health check recorded yet (run: trading-maintenance maintenance run --task system_health_check)")
    console.print(f"Data root: {settings.data_dir}   Dagster home: {state.home}")
    table = Table(title="Recent runs")
    for col in ("run_id", "job", "status", "started", "ended"):
        table.add_column(col)
    for run in runs:
        table.add_row(*(str(run[c] or "") for c in ("run_id", "job", "status", "started", "ended")))
    console.print(table)


@cli.group()
def maintenance() -> None:
    """Run maintenance tasks and read their history."""


EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130


def run_task(task_name: str, verbose: bool = False, partition: str | None = None, dry_run: bool = False,
             config_pairs: tuple[str, ...] = (), wait: bool = False, follow: bool = True) -> bool:
    """One task as a Dagster run in the configured instance, behind the instance's run limits.

    A daemon serving the instance gets the run through its queue and this command follows it to
    the end (Ctrl-C cancels it); otherwise it runs here once the same limits allow it. True when
    the run succeeded (or, with `follow=False`, was queued). A run of the task already in progress
    exits 3 naming it, unless `wait`.
    """
    from trading_maintenance import run_launch
    from trading_maintenance.tasks import resolve_task

    task = resolve_task(task_name)
    defs = _load_defs()
    try:
        job = defs.resolve_job_def(task.job_name)
    except Exception:  # noqa: BLE001 - a missing job is a usage problem, named below
        raise click.UsageError(f"task {task.name!r} maps to job {task.job_name!r}, which this installation does not define") from None
    try:
        run_config = run_launch.merge_run_config(
            run_launch.dry_run_config(job) if dry_run else {},
            run_launch.op_config_from_pairs(job, config_pairs),
        )
        run_launch.validate_run_config(job, run_config)
    except run_launch.OpConfigError as exc:
        err_console.print(f"error: {exc}")
        sys.exit(EXIT_USAGE)
    if not verbose:
        # Quiet terminal: the run's full event log stays in Dagster (UI, `--verbose`); failures are summarised below.
        run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    instance = _instance()
    tags = {**job.run_tags, run_launch.TASK_TAG: job.run_tags.get(run_launch.TASK_TAG, task.name), run_launch.TRIGGER_TAG: "cli"}
    if task.partitioned:
        tags["dagster/partition"] = partition or run_launch.default_partition(task.partitioned, load_settings(), job.partitions_def)
    label = f"{task.name} ({task.job_name})" + (f" partition {tags['dagster/partition']}" if task.partitioned else "")
    started = time.perf_counter()
    if run_launch.daemon_serves_queue(instance):
        location = run_launch.daemon_location_name(instance, _instigator_names(defs))
        run_id = run_launch.submit_to_queue(instance, job.name, run_config, tags, location)
        if not follow:
            console.print(f"{task.name}: queued  run {run_id}", soft_wrap=True)
            return True
        console.print(f"{task.name}: queued for the daemon  run {run_id} (Ctrl-C cancels it)", soft_wrap=True)
        try:
            outcome = run_launch.follow_run(instance, run_id, lambda status: verbose and console.print(f"  {status}"))
        except KeyboardInterrupt:
            err_console.print(f"{task.name}: interrupted; run {run_id} canceled")
            sys.exit(EXIT_INTERRUPTED)
    else:
        if not follow:
            err_console.print(
                "error: --no-wait needs a daemon serving this instance (`dagster dev` or `dagster-daemon run` with "
                f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}); none has sent a heartbeat lately"
            )
            sys.exit(EXIT_USAGE)
        run_config = run_launch.merge_run_config(run_config, run_launch.in_process_executor_config(job))
        try:
            recon_job, run = run_launch.claim_in_process_run(
                instance, job, run_config, tags, wait,
                on_wait=lambda decision: console.print(f"{task.name}: waiting: {decision.reason}", soft_wrap=True),
            )
        except run_launch.RunRefused as exc:
            blocking = " ".join(run.run_id for run in exc.decision.blocking)
            err_console.print(f"{task.name}: not started: {exc} (--wait waits for it)")
            err_console.print(f"in progress: {blocking}")
            sys.exit(EXIT_REFUSED)
        try:
            with console.status(f"running {label}"):
                outcome = run_launch.execute_claimed_run(instance, recon_job, run)
        except KeyboardInterrupt:
            err_console.print(f"{task.name}: interrupted; run {run.run_id} canceled")
            sys.exit(EXIT_INTERRUPTED)
    elapsed = time.perf_counter() - started
    colour = "green" if outcome.success else "red"
    verdict = "succeeded" if outcome.success else "FAILED" if outcome.status == "FAILURE" else outcome.status
    console.print(f"[{colour}]{task.name}: {verdict}[/] in {elapsed:.1f}s  run {outcome.run_id}", soft_wrap=True)
    for plan in outcome.dry_run_plans:
        console.print(plan, soft_wrap=True, markup=False, highlight=False)
    for failure in outcome.failures:
        err_console.print(f"  {failure}")
    return outcome.success


def _instigator_names(defs) -> set[str]:
    repo = defs.get_repository_def()
    return {s.name for s in repo.schedule_defs} | {s.name for s in repo.sensor_defs}


@maintenance.command("run")
@click.option("--task", "task_name", required=True, help="task name (see `maintenance schedule`)")
@click.option("--verbose", is_flag=True, help="show Dagster's event log while running")
@click.option("--partition", help="partition key for partitioned tasks (YYYY-MM-DD)")
@click.option("--dry-run", is_flag=True, help="report what would change without changing anything")
@click.option("--config", "config_pairs", multiple=True, metavar="KEY=VALUE",
              help="op config, e.g. allow_during_market_hours=true (OP.KEY=VALUE for one op); repeatable")
@click.option("--wait", is_flag=True, help="when a run of the task (or the run limit) is in the way, wait for it instead of exiting 3")
@click.option("--no-wait", "no_wait", is_flag=True, help="submit to the daemon's run queue, print the run id and return")
def maintenance_run(task_name: str, verbose: bool, partition: str | None, dry_run: bool, config_pairs: tuple[str, ...],
                    wait: bool, no_wait: bool) -> None:
    """Run one maintenance task now, as a Dagster run, behind the instance's run limits."""
    from trading_maintenance.tasks import resolve_task, valid_task_names

    try:
        resolve_task(task_name)
    except KeyError:
        err_console.print(f"error: unknown task {task_name!r}. Valid tasks: {', '.join(valid_task_names())}")
        sys.exit(EXIT_USAGE)
    if wait and no_wait:
        err_console.print("error: --wait and --no-wait exclude each other")
        sys.exit(EXIT_USAGE)
    ok = run_task(task_name, verbose=verbose, partition=partition, dry_run=dry_run, config_pairs=config_pairs,
                  wait=wait, follow=not no_wait)
    sys.exit(0 if ok else EXIT_FAILED)


@maintenance.command("run-all")
@click.option("--verbose", is_flag=True)
@click.option("--dry-run", is_flag=True)
def maintenance_run_all(verbose: bool, dry_run: bool) -> None:
    """Run every defined maintenance task once, up to the instance's max_concurrent_runs at a time;
    exit 1 if any failed. Each task is one `maintenance run --wait`, so every run obeys the limits."""
    from concurrent.futures import ThreadPoolExecutor

    from trading_maintenance.tasks import TASKS

    defs = _load_defs()
    instance = _instance()
    queue = instance.get_concurrency_config().run_queue_config
    tasks = []
    for task in TASKS.values():
        if not task.in_run_all:
            continue
        try:
            defs.resolve_job_def(task.job_name)
        except Exception:  # noqa: BLE001
            console.print(f"[yellow]{task.name}: skipped (job {task.job_name} not defined)[/]")
            continue
        tasks.append(task.name)
    limit = queue.max_concurrent_runs if queue is not None else 1
    parallel = max(1, min(len(tasks), limit if limit >= 0 else len(tasks)))

    def run_one(name: str) -> tuple[str, int]:
        args = [sys.executable, "-m", "trading_maintenance.cli", "maintenance", "run", "--task", name, "--wait"]
        args += ["--verbose"] * verbose + ["--dry-run"] * dry_run
        child = subprocess.run(args, capture_output=True, text=True)
        sys.stdout.write(child.stdout)
        sys.stderr.write(child.stderr)
        return name, child.returncode

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(run_one, tasks))
    failed = [name for name, code in results if code != 0]
    if failed:
        err_console.print(f"failed: {', '.join(failed)}")
        sys.exit(EXIT_FAILED)


@maintenance.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--task", "task_name", help="only this task")
@click.option("--json", "as_json", is_flag=True)
def maintenance_history(limit: int, task_name: str | None, as_json: bool) -> None:
    """Past runs from Dagster's storage (CLI, UI and schedule runs alike)."""
    from trading_maintenance.instance_read import known_tasks, open_reader, recent_runs
    from trading_maintenance.tasks import ALIASES

    reader, state = open_reader()
    _warn_limit_mismatches(state)
    task = ALIASES.get(task_name, task_name) if task_name else None
    if task:
        known = known_tasks(reader)
        if task not in known:
            err_console.print(f"error: unknown task {task_name!r}: no schedule or run of it in this instance. "
                              f"Known: {', '.join(sorted(known))}", markup=False, highlight=False)
            sys.exit(EXIT_USAGE)
    rows = recent_runs(reader, limit, task)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Last {len(rows)} runs")
    for col in ("run_id", "task", "status", "trigger", "started", "duration_s"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["run_id"][:8], row["task"] or row["job"], row["status"], row["trigger"], _short_time(row["started"]),
                      str(row["duration_s"] or ""))
    console.print(table)


def _short_time(iso_time: str | None) -> str:
    return datetime.fromisoformat(iso_time).strftime("%Y-%m-%d %H:%M:%S") if iso_time else ""


@maintenance.command("schedule")
@click.option("--json", "as_json", is_flag=True)
def maintenance_schedule(as_json: bool) -> None:
    """Schedules and sensors with their cron, time zone, state in the instance (RUNNING or STOPPED)
    and next tick; schedules come from the schedule table, sensors from the instance's stored state."""
    from trading_maintenance.instance_read import instigator_rows, open_reader

    reader, state = open_reader()
    _warn_limit_mismatches(state)
    rows = [row.as_dict() for row in instigator_rows(reader, load_settings().maintenance.scheduling)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="Schedules and sensors")
    for col in ("name", "kind", "cron", "timezone", "status", "next_tick"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in ("name", "kind", "cron", "timezone", "status", "next_tick")))
    console.print(table)


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

    settings = load_settings()
    if if_empty and settings.market_data_dir.exists() and any(settings.market_data_dir.iterdir()):
        console.print(f"data root {settings.data_dir} already holds market data; not seeding")
        return
    redis_url = settings.redis_url()  # the environment already overrides the file here
    database_url = settings.database_url()
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
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="instance template to render, e.g. deploy/dagster.yaml (default: the one rendered before, else dagster.yaml)")
@click.option("--replace", is_flag=True, help="replace an instance file a person wrote (kept beside it as dagster.yaml.replaced-*)")
def init_home(template: Path | None, replace: bool) -> None:
    """Create DAGSTER_HOME with the instance configuration rendered from settings
    (max_concurrent_runs = MAX_CONCURRENT_TASKS, run monitoring after TASK_TIMEOUT_MINUTES)."""
    from trading_maintenance.instance import prepare_home

    if replace and template is None:
        err_console.print("error: --replace needs --template")
        sys.exit(EXIT_USAGE)
    state = prepare_home(template, replace_own_file=replace)
    _instance()
    console.print(f"DAGSTER_HOME={state.home}")
    if state.template is not None:
        settings = load_settings()
        console.print(f"instance rendered from {state.template}: max_concurrent_runs {settings.tasks.max_concurrent_tasks}, "
                      f"max_runtime_seconds {settings.tasks.task_timeout_minutes * 60}")


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
    from trading_maintenance.runtime_env import apply_log_level, load_project_env

    load_project_env()
    try:
        apply_log_level(load_settings().log_level)
        cli(standalone_mode=True)
    except SettingsError as exc:
        err_console.print(f"configuration error: {exc}")
        sys.exit(EXIT_USAGE)
    except InstanceError as exc:
        err_console.print(f"error: {exc}")
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()

