"""Operator commands: the API server, a live terminal dashboard, positions, portfolio, services,
restarting a service, per-task metrics. Each reads the same sources as the API and the jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import click
from rich.console import Console
from rich.table import Table

EXIT_FAILED = 1
EXIT_USAGE = 2
HEALTH_POLL_SECONDS = 1.0
MAX_SHOWN_OUTPUT = 4000


def output_console() -> Console:
    """Rich on a terminal; to a pipe or file every cell is written in full (no ellipsis, no wrap)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=100_000, soft_wrap=True, no_color=True, highlight=False)


def table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    result = Table(title=title)
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*("" if value is None else str(value) for value in row))
    return result


def emit_json(payload) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def fail(message: str, code: int = EXIT_FAILED) -> None:
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"error: {message}", markup=False)
    sys.exit(code)


def _api_context():
    from trading_maintenance.api.context import ApiContext
    from trading_maintenance.cli import _instance
    from trading_maintenance.settings import load_settings

    return ApiContext(instance=_instance(), settings=load_settings(), token=None)


def _broker_client(settings):
    from trading_maintenance.resources.broker import AlpacaBrokerResource

    broker = settings.broker
    return AlpacaBrokerResource(
        base_url=broker.base_url,
        api_key=broker.api_key.get_secret_value() if broker.api_key else "",
        secret_key=broker.secret_key.get_secret_value() if broker.secret_key else "",
        timeout_seconds=broker.timeout_seconds,
    ).get_client()


def _decimal(value) -> str | None:
    """Plain notation without trailing zeros, so 100 from the broker and 100.000000 from the database read alike."""
    if value is None:
        return None
    number = Decimal(value)
    return format(number.normalize() if number else Decimal(0), "f")


def dashboard_snapshot(ctx) -> dict:
    from trading_maintenance.api import queries

    return {"status": queries.status(ctx), "schedules": queries.schedules(ctx)}


def dashboard_renderable(snapshot: dict):
    from rich.console import Group

    status = snapshot["status"]
    health = status["health"]
    parts = []
    if health:
        parts.append(f"Health {health['score']} ({health['status']}) at {health['checked_at']}")
        parts += [f"  - {reason}" for reason in health["reasons"]]
        parts.append(table("Components", ["component", "status", "score", "reason"],
                           [[c.get("name"), c.get("status"), c.get("score"), c.get("reason")] for c in health["components"]]))
    else:
        parts.append("Health: no health check recorded yet")
    active = status["runs_in_progress"] + status["queued_runs"]
    parts.append(table(f"Runs in progress ({len(status['runs_in_progress'])}) and queued ({len(status['queued_runs'])})",
                       ["run_id", "task", "status", "trigger", "created"],
                       [[r["run_id"], r["task"] or r["job"], r["status"], r["trigger"], r["created_at"]] for r in active]))
    parts.append(table("Latest results", ["task", "status", "finished", "run_id"],
                       [[r["task"], r["status"], r["finished_at"], r["run_id"]] for r in status["last_results"]]))
    parts.append(table(f"Active alerts ({len(status['active_alerts'])})", ["severity", "title", "since"],
                       [[a["severity"], a["title"], a["created_at"]] for a in status["active_alerts"]]))
    parts.append(table("Schedules and sensors", ["name", "status", "next tick"],
                       [[s["name"], s["status"], s["next_tick"]] for s in snapshot["schedules"]]))
    parts += [f"problem: {problem}" for problem in status["problems"]]
    return Group(*parts)


def check_services(settings, names: list[str] | None = None):
    from trading_maintenance.resources.services import PlatformServicesResource

    endpoints = {s.name: s.url for s in settings.services if names is None or s.name in names}
    return PlatformServicesResource(endpoints=endpoints).check_all()


def register(cli: click.Group) -> None:
    @cli.command("api")
    @click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (loopback only without a token)")
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
    def api(host: str, port: int) -> None:
        """Serve the REST API and the dashboard (/maintenance/dashboard) over this instance.

        MAINTENANCE_API_TOKEN, when set, is the bearer token every request must carry."""
        import os

        from trading_maintenance.api.app import TOKEN_ENV
        from trading_maintenance.api.server import UnsafeBind, check_bind, serve
        from trading_maintenance.settings import load_settings

        token = os.environ.get(TOKEN_ENV) or None
        try:
            check_bind(host, token)
        except UnsafeBind as exc:
            fail(str(exc), EXIT_USAGE)
        click.echo(f"serving http://{host}:{port}/maintenance/dashboard (auth: {'bearer token' if token else 'none, loopback only'})")
        serve(host, port, token, load_settings().log_level)

    @cli.command("dashboard")
    @click.option("--refresh", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600), help="seconds between refreshes")
    @click.option("--json", "as_json", is_flag=True, help="print one snapshot as JSON and exit")
    def dashboard(refresh: float, as_json: bool) -> None:
        """Health, runs in progress and queued, latest results, alerts and schedules, live until Ctrl-C."""
        from rich.live import Live

        ctx = _api_context()
        if as_json:
            emit_json(dashboard_snapshot(ctx))
            return
        console = output_console()
        if not console.is_terminal:
            console.print(dashboard_renderable(dashboard_snapshot(ctx)))
            return
        try:
            with Live(dashboard_renderable(dashboard_snapshot(ctx)), console=console, refresh_per_second=4) as live:
                while True:
                    time.sleep(refresh)
                    live.update(dashboard_renderable(dashboard_snapshot(ctx)))
        except KeyboardInterrupt:
            pass

    @cli.command("positions")
    @click.option("--json", "as_json", is_flag=True)
    def positions(as_json: bool) -> None:
        """Broker, database and Redis positions side by side per symbol; differences marked."""
        from trading_maintenance.core.reconciliation.compare import PortfolioView, Position, normalize_symbols
        from trading_maintenance.core.reconciliation.side_by_side import positions_side_by_side
        from trading_maintenance.core.reconciliation.sources import db_view, redis_view
        from trading_maintenance.core.trading.broker_data import BrokerError, to_decimal
        from trading_maintenance.resources.database import database_engine
        from trading_maintenance.resources.redis import redis_client
        from trading_maintenance.settings import load_settings

        settings = load_settings()
        try:
            with _broker_client(settings) as client:
                broker = PortfolioView("broker")
                for raw in client.get_positions():
                    symbol = str(raw.get("symbol"))
                    quantity = to_decimal(raw.get("qty"), f"qty of {symbol}")
                    broker.positions[symbol] = Position(symbol, -quantity if raw.get("side") == "short" and quantity > 0 else quantity)
        except BrokerError as exc:
            fail(f"broker: {exc}")
        now = datetime.now(timezone.utc)
        database = db_view(database_engine(settings.database_url(), settings.data_dir), now, now)
        redis_positions = redis_view(redis_client(settings.redis_url(), settings.data_dir))
        views = [broker, database, redis_positions]
        normalize_symbols(*views)
        rows = positions_side_by_side(views)
        problems = [f"{view.name}: {problem}" for view in views for problem in view.problems]
        if as_json:
            emit_json({"positions": [{"symbol": r["symbol"], **{k: _decimal(v) for k, v in r["quantities"].items()}, "differs": r["differs"]}
                                     for r in rows], "problems": problems})
            return
        console = output_console()
        console.print(table("Positions (signed quantity; * marks a difference)", ["", "symbol", "broker", "database", "redis"],
                            [["*" if r["differs"] else "", r["symbol"], *(_decimal(r["quantities"][v.name]) for v in views)] for r in rows]))
        for problem in problems:
            console.print(f"problem: {problem}", markup=False)
        differing = sum(1 for r in rows if r["differs"])
        console.print(f"{len(rows)} symbols, {differing} differ" if rows else "no open positions anywhere")

    @cli.command("portfolio")
    @click.option("--json", "as_json", is_flag=True)
    def portfolio(as_json: bool) -> None:
        """Account value, cash, buying power, day P&L and open orders from the broker, the database's view beside it."""
        from trading_maintenance.core.reconciliation.sources import db_view
        from trading_maintenance.core.trading.broker_data import BrokerError, to_decimal
        from trading_maintenance.resources.database import database_engine
        from trading_maintenance.settings import load_settings

        settings = load_settings()
        try:
            with _broker_client(settings) as client:
                account = client.get_account()
                orders = client.get_open_orders()
                equity = to_decimal(account.get("equity") or account.get("portfolio_value"), "account equity")
                last_equity = account.get("last_equity")
                broker = {
                    "account_value": _decimal(equity),
                    "cash": _decimal(to_decimal(account.get("cash"), "account cash")),
                    "buying_power": _decimal(to_decimal(account.get("buying_power"), "account buying_power")),
                    "day_pnl": _decimal(equity - to_decimal(last_equity, "account last_equity")) if last_equity not in (None, "") else None,
                    "open_orders": [{"symbol": o.get("symbol"), "side": o.get("side"), "qty": o.get("qty"), "type": o.get("type"),
                                     "status": o.get("status"), "submitted_at": o.get("submitted_at")} for o in orders],
                }
        except BrokerError as exc:
            fail(f"broker: {exc}")
        now = datetime.now(timezone.utc)
        view = db_view(database_engine(settings.database_url(), settings.data_dir), now - timedelta(seconds=1), now)
        database = {"cash": _decimal(view.cash), "open_positions": len(view.positions),
                    "open_orders": [{"symbol": o.symbol, "status": o.status, "submitted_at": o.submitted_at} for o in view.open_orders]}
        if as_json:
            emit_json({"broker": broker, "database": database})
            return
        console = output_console()
        console.print(table("Portfolio", ["", "broker", "database"], [
            ["account value", broker["account_value"], ""],
            ["cash", broker["cash"], database["cash"]],
            ["buying power", broker["buying_power"], ""],
            ["day P&L", broker["day_pnl"], ""],
            ["open orders", len(broker["open_orders"]), len(database["open_orders"])],
            ["open positions", "", database["open_positions"]],
        ]))
        console.print(table("Open orders at the broker", ["symbol", "side", "qty", "type", "status", "submitted"],
                            [[o["symbol"], o["side"], o["qty"], o["type"], o["status"], o["submitted_at"]] for o in broker["open_orders"]]))

    @cli.command("services")
    @click.option("--json", "as_json", is_flag=True)
    def services(as_json: bool) -> None:
        """Each platform service's /health: status and latency. Exit 1 when any is unhealthy."""
        from trading_maintenance.settings import load_settings

        results = check_services(load_settings())
        if as_json:
            emit_json([result.as_dict() for result in results])
        else:
            output_console().print(table("Services", ["service", "healthy", "status", "latency_ms", "detail", "url"], [
                [r.name, "yes" if r.healthy else "NO", r.status_code, r.latency_ms, r.detail, r.url] for r in results]))
        if any(not result.healthy for result in results):
            sys.exit(EXIT_FAILED)

    @cli.command("restart")
    @click.option("--service", "service_name", required=True, help="a service named in settings (services[].name)")
    @click.option("--json", "as_json", is_flag=True)
    def restart(service_name: str, as_json: bool) -> None:
        """Run the service's configured restart_command, then wait for its /health to answer healthy."""
        from trading_maintenance.core.common.masking import mask_text
        from trading_maintenance.settings import load_settings

        settings = load_settings()
        service = next((s for s in settings.services if s.name == service_name), None)
        if service is None:
            fail(f"unknown service {service_name!r}; configured services: {', '.join(s.name for s in settings.services) or 'none'}", EXIT_USAGE)
        if not service.restart_command:
            fail(f"service {service_name!r} has no restart_command in settings (services[].restart_command, "
                 "e.g. systemctl restart NAME); nothing was run", EXIT_USAGE)
        secrets = settings.secret_values()
        deadline = time.monotonic() + service.restart_timeout_seconds
        try:
            completed = subprocess.run(service.restart_command, capture_output=True, text=True, errors="replace",
                                       timeout=service.restart_timeout_seconds, stdin=subprocess.DEVNULL)
            exit_code, output = completed.returncode, (completed.stdout + completed.stderr)
        except FileNotFoundError:
            fail(f"restart_command of {service_name!r}: program {service.restart_command[0]!r} not found", EXIT_FAILED)
        except subprocess.TimeoutExpired:
            exit_code, output = None, f"did not finish within {service.restart_timeout_seconds:g} s; killed"
        output = mask_text(output.strip(), secrets)[-MAX_SHOWN_OUTPUT:]
        health = None
        while exit_code == 0:
            health = check_services(settings, [service_name])[0]
            if health.healthy or time.monotonic() >= deadline:
                break
            time.sleep(HEALTH_POLL_SECONDS)
        healthy = bool(health and health.healthy)
        answer = {"service": service_name, "exit_code": exit_code, "output": output, "healthy": healthy,
                  "health": health.as_dict() if health else None}
        if as_json:
            emit_json(answer)
        else:
            console = output_console()
            console.print(f"{service_name}: restart command exited {exit_code}", markup=False)
            if output:
                console.print(output, markup=False)
            if health is not None:
                verdict = "healthy" if healthy else f"NOT healthy after {service.restart_timeout_seconds:g} s ({health.detail})"
                console.print(f"{service_name}: {verdict}", markup=False)
        sys.exit(0 if healthy else EXIT_FAILED)

    @cli.command("metrics")
    @click.option("--task", "task_name", help="only this task")
    @click.option("--json", "as_json", is_flag=True)
    def metrics(task_name: str | None, as_json: bool) -> None:
        """Per task over 7 and 30 days: runs, success rate, duration p50/p95/max, bytes freed, files processed."""
        from trading_maintenance.api import queries
        from trading_maintenance.tasks import TASKS, resolve_task, valid_task_names

        if task_name:
            try:
                names = [resolve_task(task_name).name]
            except KeyError:
                fail(f"unknown task {task_name!r}. Valid tasks: {', '.join(valid_task_names())}", EXIT_USAGE)
        else:
            names = list(TASKS)
        answer = queries.task_metrics(_api_context(), names)
        if as_json:
            emit_json(answer)
            return
        rows = [[m["task"], f"{w['days']}d", w["runs"], w["success_rate"], w["duration_p50_s"], w["duration_p95_s"],
                 w["duration_max_s"], w["bytes_freed"], w["files_processed"]] for m in answer for w in m["windows"]]
        output_console().print(table("Task metrics", ["task", "window", "runs", "success rate", "p50 s", "p95 s", "max s",
                                                      "bytes freed", "files"], rows))
