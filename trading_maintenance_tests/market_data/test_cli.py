"""The market-data CLI commands on real files."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import click
from click.testing import CliRunner

from trading_maintenance.cli_ext.market_data import register
from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance_tests.market_data.synth import generate


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    register(cli)
    return cli


def test_bars_and_archived_commands(mdir, config_path, monkeypatch):
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(config_path))
    generate(mdir, ["AAA"], date(2024, 3, 1), date(2024, 3, 5))
    consolidate_month(mdir, "2024-03", as_of=datetime(2025, 1, 1, tzinfo=timezone.utc))
    runner = CliRunner()
    result = runner.invoke(_cli(), ["market-data", "bars", "AAA", "1min", "2024-03-01", "2024-03-06", "--limit", "3", "--csv"])
    assert result.exit_code == 0, result.output
    assert "1170 bars" in result.output and result.output.count("AAA,") == 3
    result = runner.invoke(_cli(), ["market-data", "archived", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output.splitlines()[0])) == 3  # March 2024 is far past 90 days
    result = runner.invoke(_cli(), ["market-data", "archived", "--retention-days", "100000", "--json"])
    assert json.loads(result.output.splitlines()[0]) == []
