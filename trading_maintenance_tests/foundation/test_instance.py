"""DAGSTER_HOME: created and migrated safely by commands started together, rendered from settings
whichever template is used, and any failure to open it reported in one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trading_maintenance.instance import InstanceError, prepare_home, rendered_from
from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config

CLI = [sys.executable, "-m", "trading_maintenance.cli"]


@pytest.fixture
def cli_env(tmp_path, data_dir, redis_url):
    return {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "MAINTENANCE_CONFIG": str(write_config(tmp_path, data_dir)),
        "TRADING_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "MAX_CONCURRENT_TASKS": "2",
        "TASK_TIMEOUT_MINUTES": "7",
    }


def _run(args, env):
    return subprocess.run(CLI + args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)


def test_commands_started_together_on_a_fresh_home_all_succeed(cli_env):
    processes = [
        subprocess.Popen(CLI + ["status", "--json"], env=cli_env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=180), p.stderr.read()) for p in processes]
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], [err[-1500:] for _, err in outcomes]
    later = _run(["status", "--json"], cli_env)
    assert later.returncode == 0, later.stderr[-2000:]


def test_an_instance_that_cannot_be_opened_is_one_clear_line(cli_env):
    home = Path(cli_env["DAGSTER_HOME"])
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"run_storage": {"module": "no_such_storage_module", "class": "Storage"}}))
    result = _run(["status"], cli_env)
    assert result.returncode == 1
    assert f"cannot open the Dagster instance in DAGSTER_HOME={home}" in result.stderr
    assert "no_such_storage_module" in result.stderr and "Traceback" not in result.stderr


def test_a_hand_written_instance_file_that_ignores_settings_is_reported_loudly(cli_env):
    home = Path(cli_env["DAGSTER_HOME"])
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())  # copied, as README used to say
    result = _run(["status", "--json"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max_concurrent_runs is 3 but MAX_CONCURRENT_TASKS is 2" in result.stderr
    assert "TASK_TIMEOUT_MINUTES is 7" in result.stderr
    assert (home / "dagster.yaml").read_text() == (PROJECT_ROOT / "dagster.yaml").read_text()  # a person's file is theirs


def test_init_renders_the_postgres_template_with_settings_and_keeps_it(tmp_path, monkeypatch, data_dir):
    home = tmp_path / "prod_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, data_dir)))
    monkeypatch.setenv("MAX_CONCURRENT_TASKS", "5")
    monkeypatch.setenv("TASK_TIMEOUT_MINUTES", "11")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "set")  # an unset optional variable is left out of the file
    template = PROJECT_ROOT / "deploy" / "dagster.yaml"
    state = prepare_home(template)
    rendered = yaml.safe_load((home / "dagster.yaml").read_text())
    assert state.template == template
    assert rendered["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert rendered["concurrency"]["runs"]["max_concurrent_runs"] == 5
    assert {"key": "maintenance/task", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in rendered["concurrency"]["runs"]["tag_concurrency_limits"]
    assert rendered["run_monitoring"] == {"enabled": True, "max_runtime_seconds": 660, "poll_interval_seconds": 15}
    monkeypatch.setenv("MAX_CONCURRENT_TASKS", "4")
    prepare_home()  # every later command re-renders from the template the file names
    assert rendered_from(home / "dagster.yaml") == template
    again = yaml.safe_load((home / "dagster.yaml").read_text())
    assert "postgres" in again["storage"] and again["concurrency"]["runs"]["max_concurrent_runs"] == 4


def test_init_replaces_a_hand_written_file_only_when_asked_and_keeps_it(tmp_path, monkeypatch, data_dir):
    home = tmp_path / "home"
    home.mkdir()
    own = "# mine\ntelemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(own)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, data_dir)))
    template = PROJECT_ROOT / "deploy" / "dagster.yaml"
    with pytest.raises(InstanceError, match="written by hand"):
        prepare_home(template)
    assert (home / "dagster.yaml").read_text() == own
    prepare_home(template, replace_own_file=True)
    assert rendered_from(home / "dagster.yaml") == template
    assert [p.read_text() for p in home.glob("dagster.yaml.replaced-*")] == [own]
