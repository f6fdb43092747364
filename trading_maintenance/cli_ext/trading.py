"""`trading-maintenance export --type tradenote --date ...` and `trading-maintenance demo broker`."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import click

EXIT_USAGE = 2
DEFAULT_DEMO_PORT = 8780


def resolve_export_date(value: str, tz_name: str, first_day: str | None = None) -> date:
    """'today' (in the journal's zone) or YYYY-MM-DD: any calendar day from the first partition to today.

    Fills happen on every day (overnight sessions from Sunday evening, crypto), so weekends and
    exchange holidays are exported like any other day."""
    today = datetime.now(ZoneInfo(tz_name)).date()
    if value == "today":
        return today
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected 'today' or YYYY-MM-DD", param_hint="--date") from None
    if day > today:
        raise click.BadParameter(f"{day.isoformat()} is in the future ({tz_name} today is {today.isoformat()})", param_hint="--date")
    if first_day and day.isoformat() < first_day:
        raise click.BadParameter(f"{day.isoformat()} is before the first partition {first_day} "
                                 "(maintenance.scheduling.partitions_start_date)", param_hint="--date")
    return day


def demo_broker_address(base_url: str) -> tuple[str, int]:
    """Serve on the port of a loopback ALPACA_BASE_URL, so the configured client finds the demo broker."""
    parsed = urlparse(base_url)
    if parsed.hostname in ("127.0.0.1", "localhost") and parsed.port:
        return "127.0.0.1", parsed.port
    return "127.0.0.1", DEFAULT_DEMO_PORT


def register(cli: click.Group) -> None:
    @cli.command("export")
    @click.option("--type", "kind", type=click.Choice(["tradenote"]), required=True, help="what to export")
    @click.option("--date", "on_date", default="today", show_default=True, help="today or YYYY-MM-DD (any calendar day)")
    @click.option("-v", "--verbose", is_flag=True, help="show the run's logs")
    def export(kind: str, on_date: str, verbose: bool) -> None:
        """Materialize the TradeNote export of one calendar day (a partition of `tradenote_export`)."""
        from trading_maintenance.cli import run_task
        from trading_maintenance.settings import load_settings

        settings = load_settings()
        day = resolve_export_date(on_date, settings.trading.journal_timezone, settings.maintenance.scheduling.partitions_start_date)
        ok = run_task("tradenote_export", verbose=verbose, partition=day.isoformat())
        path = settings.exports_dir / "tradenote" / f"tradenote_{day.isoformat()}.csv"
        if ok:
            click.echo(str(path) if path.exists() else f"{day.isoformat()}: no fills, no file written")
        sys.exit(0 if ok else 1)

    demo = cli.commands.get("demo")
    if demo is None:
        @cli.group("demo")
        def demo() -> None:
            """The demo platform."""

    @demo.command("broker")
    @click.option("--port", type=int, default=None, help="default: the port of a loopback ALPACA_BASE_URL, else 8780")
    @click.option("--state", "state_file", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="a JSON state file instead of the state built from the trading database")
    def demo_broker(port: int | None, state_file: str | None) -> None:
        """Serve the Alpaca v2 read endpoints for the demo account (127.0.0.1 only) until interrupted."""
        from trading_maintenance.demo.broker_server import DemoBrokerServer, broker_state_from_db, load_state
        from trading_maintenance.resources.database import database_engine, ensure_trading_schema
        from trading_maintenance.settings import load_settings

        settings = load_settings()
        host, default_port = demo_broker_address(settings.broker.base_url)
        if state_file:
            state = load_state(state_file)
        else:
            engine = database_engine(settings.database_url(), settings.data_dir, settings.database.pool_size)
            ensure_trading_schema(engine)
            state = broker_state_from_db(engine)
        key = settings.broker.api_key.get_secret_value() if settings.broker.api_key else ""
        secret = settings.broker.secret_key.get_secret_value() if settings.broker.secret_key else ""
        try:
            server = DemoBrokerServer(state, host=host, port=port or default_port, api_key=key, secret_key=secret)
        except OSError as exc:
            raise click.ClickException(f"cannot serve the demo broker on {host}:{port or default_port}: {exc.strerror}") from None
        click.echo(f"demo broker on {server.url}: {len(state['positions'])} positions, {len(state['orders'])} open orders, "
                   f"{len(state['activities'])} fills, cash {state['account']['cash']}"
                   + ("" if key else " (no API key configured: any key accepted)"))
        click.echo(f"point the project at it with ALPACA_BASE_URL={server.url}")
        server.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()
