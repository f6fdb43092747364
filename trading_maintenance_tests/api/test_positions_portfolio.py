"""`positions` and `portfolio` in a real subprocess against the demo broker, a seeded trading database
and Redis: side by side per symbol with differences marked, account figures beside the database's view,
--json for each, and output to a pipe in full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from trading_maintenance.demo.broker_server import DemoBrokerServer, broker_state_from_db
from trading_maintenance.resources.database import database_engine, ensure_trading_schema
from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.trading.conftest import API_KEY, SECRET_KEY, seed_consistent, seed_redis_consistent

CLI = [sys.executable, "-m", "trading_maintenance.cli"]
# Longer than any terminal is wide: a pipe must still get every character of it.
LONG_SYMBOL = "ZZLONG" + "X" * 150


@pytest.fixture
def platform(tmp_path, data_dir, redis_client, redis_url):
    """Seeded database and Redis, the demo broker built from the database, then three differences:
    Redis holds 90 AAPL (not 100), the broker alone holds LONG_SYMBOL, and yesterday's equity is known."""
    engine = database_engine("", data_dir)
    ensure_trading_schema(engine)
    now = datetime.now(timezone.utc)
    seed_consistent(engine, now)
    seed_redis_consistent(redis_client)
    redis_client.hset("positions:AAPL", "quantity", "90")
    state = broker_state_from_db(engine, now)
    state["positions"].append({**state["positions"][0], "symbol": LONG_SYMBOL, "qty": "3", "side": "long"})
    state["account"]["last_equity"] = "74000"
    server = DemoBrokerServer(state, api_key=API_KEY, secret_key=SECRET_KEY).start()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir)),
           "TRADING_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "MAINTENANCE_ENV_FILE": "",
           "ALPACA_BASE_URL": server.url, "ALPACA_API_KEY": API_KEY, "ALPACA_SECRET_KEY": SECRET_KEY}
    env.pop("DATABASE_URL", None)
    yield env, state
    server.stop()


def _run(args, env):
    return subprocess.run(CLI + args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def _row(stdout: str, symbol: str) -> list[str]:
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.replace("┃", "│").split("│")]
        if symbol in cells:
            return cells
    raise AssertionError(f"no row for {symbol} in:\n{stdout}")


def test_positions_side_by_side_with_differences_marked(platform):
    env, _ = platform
    shown = _run(["positions"], env)
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout and LONG_SYMBOL in shown.stdout
    assert _row(shown.stdout, "AAPL")[1:6] == ["*", "AAPL", "100", "100", "90"]
    assert _row(shown.stdout, "TSLA")[1:6] == ["", "TSLA", "-20", "-20", "-20"]
    assert _row(shown.stdout, LONG_SYMBOL)[1:6] == ["*", LONG_SYMBOL, "3", "", ""]
    assert "differ" in shown.stdout

    answer = json.loads(_run(["positions", "--json"], env).stdout)
    by_symbol = {row["symbol"]: row for row in answer["positions"]}
    assert set(by_symbol) == {"AAPL", "TSLA", "BRK.B", LONG_SYMBOL}
    assert by_symbol["AAPL"] == {"symbol": "AAPL", "broker": "100", "database": "100", "redis": "90", "differs": True}
    assert by_symbol["TSLA"]["differs"] is False and by_symbol["BRK.B"]["differs"] is False
    assert by_symbol[LONG_SYMBOL]["broker"] == "3" and by_symbol[LONG_SYMBOL]["database"] is None


def test_portfolio_shows_the_account_and_the_databases_view(platform):
    env, state = platform
    answer = json.loads(_run(["portfolio", "--json"], env).stdout)
    broker, database = answer["broker"], answer["database"]
    assert broker["account_value"] == "74350" and broker["cash"] == "50000" and broker["buying_power"] == "100000"
    assert broker["day_pnl"] == "350"
    assert [(o["symbol"], o["side"], o["qty"]) for o in broker["open_orders"]] == [("MSFT", "buy", "5")]
    assert database["cash"] == "50000" and database["open_positions"] == 3
    assert [o["symbol"] for o in database["open_orders"]] == ["MSFT"]

    shown = _run(["portfolio"], env)
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout
    assert _row(shown.stdout, "account value")[2] == "74350"
    assert _row(shown.stdout, "cash")[2:4] == ["50000", "50000"]
    assert _row(shown.stdout, "day P&L")[2] == "350"
    assert _row(shown.stdout, "open orders")[2:4] == ["1", "1"]
    assert _row(shown.stdout, "MSFT")[1:4] == ["MSFT", "buy", "5"]


def test_an_unreachable_broker_is_a_clear_error(platform):
    env, _ = platform
    env = {**env, "ALPACA_BASE_URL": "http://127.0.0.1:9"}
    for command in ("positions", "portfolio"):
        failed = _run([command], env)
        assert failed.returncode == 1 and failed.stderr.startswith("error: broker:"), failed.stderr
        assert "Traceback" not in failed.stderr and SECRET_KEY not in failed.stderr
