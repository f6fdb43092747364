"""The `export --type tradenote` and `demo broker` commands."""

from __future__ import annotations

from datetime import date

import click
import pytest
from click.testing import CliRunner

from trading_maintenance.cli_ext.trading import demo_broker_address, register, resolve_export_date


def test_export_date_is_any_calendar_day_up_to_today():
    for day in ("2024-03-05", "2024-07-04", "2024-03-10"):  # a weekday, a holiday, a Sunday (overnight and crypto fills)
        assert resolve_export_date(day, "America/New_York") == date.fromisoformat(day)
    for bad in ("yesterday", "2999-01-01", "2019-12-31"):
        with pytest.raises(click.BadParameter):
            resolve_export_date(bad, "America/New_York", "2020-01-01")


def test_demo_broker_listens_where_the_client_looks():
    assert demo_broker_address("http://127.0.0.1:18781") == ("127.0.0.1", 18781)
    assert demo_broker_address("https://paper-api.alpaca.markets") == ("127.0.0.1", 8780)


def test_commands_register_on_a_group_with_or_without_demo():
    @click.group()
    def bare():
        pass

    register(bare)
    assert "export" in bare.commands and "broker" in bare.commands["demo"].commands
    result = CliRunner().invoke(bare, ["export", "--type", "tradenote", "--date", "2999-12-25"])
    assert result.exit_code == 2 and "is in the future" in result.output
