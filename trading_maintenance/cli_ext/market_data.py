"""`trading-maintenance market-data ...`: read bars across archives and daily files; see what is archived."""

from __future__ import annotations

import json
import warnings

import click


def register(cli: click.Group) -> None:
    @cli.group("market-data")
    def market_data() -> None:
        """Market-data archives: read bars, list daily files a verified archive covers."""

    @market_data.command("bars")
    @click.argument("symbol")
    @click.argument("timeframe")
    @click.argument("start")
    @click.argument("end")
    @click.option("--limit", default=20, show_default=True, type=click.IntRange(0, 10_000_000), help="rows to print (0: count only)")
    @click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table")
    def bars(symbol: str, timeframe: str, start: str, end: str, limit: int, as_csv: bool) -> None:
        """Bars of SYMBOL/TIMEFRAME with START <= timestamp < END (ISO dates or times, UTC when naive)."""
        from trading_maintenance.market_data import read_bars
        from trading_maintenance.settings import load_settings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                df = read_bars(symbol, timeframe, start, end, market_data_dir=load_settings().market_data_dir)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
        click.echo(f"{df.height} bars", err=True)
        if limit:
            shown = df.head(limit)
            click.echo(shown.write_csv() if as_csv else str(shown))

    @market_data.command("archived")
    @click.option("--retention-days", type=int, help="only files older than this many days (default: the configured retention)")
    @click.option("--all", "show_all", is_flag=True, help="every archived file, whatever its age")
    @click.option("--json", "as_json", is_flag=True)
    def archived(retention_days: int | None, show_all: bool, as_json: bool) -> None:
        """Daily files whose rows are verified present in a monthly archive (and so may be deleted)."""
        from datetime import datetime, timezone
        from zoneinfo import ZoneInfo

        from trading_maintenance.core.market_data.retention import archived_daily_files, expired_archived_daily_files
        from trading_maintenance.settings import load_settings

        settings = load_settings()
        mdir = settings.market_data_dir
        if show_all:
            files = sorted(archived_daily_files(mdir))
        else:
            days = retention_days if retention_days is not None else settings.maintenance.data_retention.parquet_files
            today = datetime.now(timezone.utc).astimezone(ZoneInfo(settings.maintenance.scheduling.timezone)).date()
            files = expired_archived_daily_files(mdir, None, days, today)
        if as_json:
            click.echo(json.dumps([str(p) for p in files]))
        else:
            for p in files:
                click.echo(str(p))
            click.echo(f"{len(files)} daily files covered by verified archives", err=True)
