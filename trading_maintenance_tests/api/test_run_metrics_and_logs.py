"""Per-task figures from run events, and every run's log lines in logs/maintenance_runner.log."""

from __future__ import annotations

import logging

import dagster as dg
import yaml

from trading_maintenance.core.reconciliation.compare import PortfolioView, Position
from trading_maintenance.core.reconciliation.side_by_side import positions_side_by_side
from trading_maintenance.core.runs.metrics import FinishedRun, percentile, window_figures, work_done


def test_percentiles_and_windows():
    assert percentile([], 0.5) is None
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3 and percentile(list(range(1, 101)), 0.95) == 95
    now = 10 * 86400.0
    runs = [FinishedRun(now - 86400, "SUCCESS", 2.0, 10, 1), FinishedRun(now - 86400, "FAILURE", 4.0),
            FinishedRun(now - 2 * 86400, "SUCCESS", 1.0), FinishedRun(now - 9 * 86400, "SUCCESS", 8.0, 5, 5)]
    week = window_figures(runs, now, 7)
    assert (week["runs"], week["succeeded"], week["failed"], week["success_rate"]) == (3, 2, 1, 0.6667)
    assert week["duration_max_s"] == 4.0 and week["bytes_freed"] == 10
    assert window_figures(runs, now, 30)["bytes_freed"] == 15


def test_work_done_counts_an_assets_output_and_materialization_once():
    events = [("consolidate", {"bytes_freed": 100, "daily_files_deleted": 4, "rows": 9}),
              ("consolidate", {"bytes_freed": 100, "daily_files_deleted": 4}),
              ("rotate", {"bytes_freed": 5, "logs_rotated": 2, "files_compressed": 1, "dry_run": True})]
    assert work_done(events) == (105, 7)


def test_positions_side_by_side_marks_differences():
    broker, database, redis = PortfolioView("broker"), PortfolioView("database"), PortfolioView("redis")
    for view in (broker, database, redis):
        view.positions["AAPL"] = Position("AAPL", 10)
    database.positions["MSFT"] = Position("MSFT", 5)
    rows = {row["symbol"]: row for row in positions_side_by_side([broker, database, redis])}
    assert not rows["AAPL"]["differs"] and rows["MSFT"]["differs"]
    assert rows["MSFT"]["quantities"] == {"broker": None, "database": 5, "redis": None}


def test_run_log_lines_reach_the_runner_and_error_logs(tmp_path, data_dir, monkeypatch):
    from trading_maintenance.instance import render_instance_yaml
    from trading_maintenance.settings import PROJECT_ROOT, load_settings
    from trading_maintenance_tests.conftest import write_config

    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(write_config(tmp_path, data_dir))
    rendered = yaml.safe_load(render_instance_yaml((PROJECT_ROOT / "dagster.yaml").read_text(), settings=settings))
    assert rendered["python_logs"]["python_log_level"] == "DEBUG"
    (data_dir / "logs").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"python_logs": rendered["python_logs"]}))

    @dg.op
    def talk(context):
        context.log.debug("a debug line")
        context.log.error("an error line")

    @dg.job
    def chatty():
        talk()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        chatty.execute_in_process(instance=instance)
    for handler in logging.getLogger("dagster").handlers + logging.getLogger().handlers:
        handler.flush()
    runner = (data_dir / "logs" / "maintenance_runner.log").read_text()
    errors = (data_dir / "logs" / "error.log").read_text()
    assert "a debug line" in runner and "an error line" in runner
    assert "an error line" in errors and "a debug line" not in errors
