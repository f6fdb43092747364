"""Fixtures for market-data tests: a market-data root and helpers to write collector files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def mdir(data_dir) -> Path:
    path = data_dir / "parquet" / "market_data"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def md_defs(make_resources):
    """The market-data Definitions bound to the test's real resources (Redis, settings, data root)."""
    import dagster as dg

    from trading_maintenance.defs.market_data.assets import (
        market_data_daily,
        market_data_daily_cleanup,
        market_data_monthly,
        market_data_monthly_job,
        market_data_monthly_schedule,
    )

    return dg.Definitions(
        assets=[market_data_daily, market_data_monthly, market_data_daily_cleanup],
        jobs=[market_data_monthly_job],
        schedules=[market_data_monthly_schedule],
        resources=make_resources(),
    )
