"""`trading-maintenance maintenance report`: write a daily, weekly or custom report and print its path."""

from __future__ import annotations

import sys
from datetime import date

import click

EXIT_USAGE = 2


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected YYYY-MM-DD", param_hint=option) from None


def register(cli: click.Group) -> None:
    maintenance = cli.commands.get("maintenance")
    if not isinstance(maintenance, click.Group):
        return

    @maintenance.command("report")
    @click.option("--type", "report_type", type=click.Choice(["daily", "weekly", "custom"]), default="daily", show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["html", "json", "csv"]), default="html", show_default=True)
    @click.option("--date", "on_date", help="daily: the day; weekly: a day after the week (default: today, New York)")
    @click.option("--since", help="custom: first day, YYYY-MM-DD")
    @click.option("--until", help="custom: last day (inclusive), YYYY-MM-DD")
    @click.option("--sections", help="comma-separated sections (default: those of the report type)")
    def maintenance_report(report_type: str, fmt: str, on_date: str | None, since: str | None, until: str | None,
                           sections: str | None) -> None:
        """Write a maintenance report from Dagster's run storage and print the file's path."""
        from trading_maintenance.cli import _instance
        from trading_maintenance.core.reports.build import check_sections
        from trading_maintenance.core.reports.generate import generate_report, report_period
        from trading_maintenance.resources.database import settings_trading_engine
        from trading_maintenance.settings import load_settings

        day, first, last = _day(on_date, "--date"), _day(since, "--since"), _day(until, "--until")
        if report_type != "custom" and (first or last):
            raise click.UsageError("--since/--until are for --type custom")
        chosen = [s.strip() for s in sections.split(",") if s.strip()] if sections else None
        try:
            check_sections(chosen, report_type)
            period = report_period(report_type, day, first, last)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        settings = load_settings()
        path = generate_report(_instance(), report_type, fmt, sections=chosen, period=period, settings=settings,
                               open_trading_engine=lambda: settings_trading_engine(settings))
        click.echo(str(path))
