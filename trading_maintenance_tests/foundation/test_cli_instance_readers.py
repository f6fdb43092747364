"""`status`, `maintenance history` and `maintenance schedule` read the instance alone: what they
show comes from Dagster's storage and the schedule table, never from loading the definitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from trading_maintenance_tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("trading_maintenance.definitions", "pandas", "polars", "pyarrow", "exchange_calendars", "boto3", "cryptography")


@pytest.fixture
def home(tmp_path, data_dir, monkeypatch):
    path = tmp_path / "dagster_home"
    path.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(path))
    monkeypatch.setenv("TRADING_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, data_dir)))
    return path


@pytest.fixture
def instance(home):
    from trading_maintenance.instance import open_instance

    opened, _state = open_instance()
    yield opened
    opened.dispose()


def _invoke(*args: str):
    from trading_maintenance.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def _run_task(instance, job_name: str, task: str, succeed: bool = True) -> str:
    @dg.op
    def work():
        if not succeed:
            raise RuntimeError("part failed")

    @dg.job(name=job_name, tags={"maintenance/task": task, "maintenance/trigger": "cli"})
    def job():
        work()

    return job.execute_in_process(instance=instance, raise_on_error=False).run_id


def test_status_shows_the_latest_health_with_its_reasons_and_recent_runs(instance):
    run_id = _run_task(instance, "data_cleanup_job", "data_cleanup")
    reasons = ["redis: unreachable (ConnectionError)", "disk 93% full"]
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "system_health",
            metadata={"health_score": 41.0, "health_status": "red", "reason_list": dg.MetadataValue.json(reasons)},
        )
    )
    result = _invoke("status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert (status["health"]["score"], status["health"]["status"], status["health"]["reasons"]) == (41.0, "red", reasons)
    assert [run["run_id"] for run in status["recent_runs"]] == [run_id[:8]]
    text = _invoke("status").output
    assert "41.0 (red)" in text and "- redis: unreachable (ConnectionError)" in text and "- disk 93% full" in text


def test_status_reads_reasons_recorded_as_markdown_before_the_list_existed(instance):
    instance.report_runless_asset_event(
        dg.AssetMaterialization("system_health", metadata={"health_score": 70.0, "health_status": "yellow",
                                                           "reasons": dg.MetadataValue.md("- memory 91%\n- backup 3 days old")})
    )
    assert json.loads(_invoke("status", "--json").output)["health"]["reasons"] == ["memory 91%", "backup 3 days old"]


def test_history_filters_by_task_or_alias_and_refuses_an_unknown_task(instance):
    cleanup = _run_task(instance, "data_cleanup_job", "data_cleanup")
    backup = _run_task(instance, "backup_archive_job", "backup", succeed=False)
    rows = json.loads(_invoke("maintenance", "history", "--json").output)
    assert [row["run_id"] for row in rows] == [backup, cleanup]
    only = json.loads(_invoke("maintenance", "history", "--task", "backup_critical_data", "--json").output)
    assert [(row["run_id"], row["task"], row["status"], row["trigger"]) for row in only] == [(backup, "backup", "FAILURE", "cli")]
    never_run = json.loads(_invoke("maintenance", "history", "--task", "security_audit", "--json").output)
    assert never_run == []  # a scheduled task without runs yet
    unknown = _invoke("maintenance", "history", "--task", "defragment")
    assert unknown.exit_code == 2 and "unknown task 'defragment'" in unknown.output and "data_cleanup" in unknown.output


def _state(name: str, kind: str, status: str, data):
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, InstigatorType

    location = GrpcServerCodeLocationOrigin(host="localhost", port=4000, location_name="trading_maintenance")
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), name)
    return InstigatorState(origin, InstigatorType[kind], InstigatorStatus[status], data)


def test_schedule_shows_the_real_state_and_next_tick_of_schedules_and_sensors(instance):
    from dagster._core.scheduler.instigation import ScheduleInstigatorData, SensorInstigatorData

    last_tick = time.time() - 10
    instance.add_instigator_state(_state("data_cleanup_schedule", "SCHEDULE", "STOPPED", ScheduleInstigatorData("0 2 * * *")))
    instance.add_instigator_state(_state("log_rotation_schedule", "SCHEDULE", "DECLARED_IN_CODE", ScheduleInstigatorData("30 2 * * *")))
    instance.add_instigator_state(_state("backup_verification_sensor", "SENSOR", "STOPPED", SensorInstigatorData(min_interval=60)))
    instance.add_instigator_state(
        _state("emergency_maintenance_sensor", "SENSOR", "DECLARED_IN_CODE", SensorInstigatorData(last_tick_timestamp=last_tick, min_interval=30))
    )
    result = _invoke("maintenance", "schedule", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert (rows["data_cleanup_schedule"]["status"], rows["data_cleanup_schedule"]["next_tick"]) == ("STOPPED", "")
    assert rows["log_rotation_schedule"]["status"] == "RUNNING" and rows["log_rotation_schedule"]["next_tick"]
    assert rows["system_health_check_schedule"]["status"] == "RUNNING"  # declared RUNNING, no stored state
    assert rows["system_health_check_schedule"]["timezone"] == "America/New_York"
    assert (rows["backup_verification_sensor"]["status"], rows["backup_verification_sensor"]["next_tick"]) == ("STOPPED", "")
    emergency = rows["emergency_maintenance_sensor"]
    assert emergency["kind"] == "sensor" and emergency["status"] == "RUNNING" and emergency["cron"] == "every 30s"
    assert emergency["next_tick"].startswith(time.strftime("%Y-%m-%d", time.gmtime(last_tick + 30)))
    assert {row["status"] for row in rows.values()} <= {"RUNNING", "STOPPED"}


def test_declared_instigators_match_the_definitions():
    """The schedule table and DECLARED_OUTSIDE_TABLE list exactly what the definitions declare."""
    from trading_maintenance.core.runs.schedule_table import SCHEDULE_TABLE, cron_for
    from trading_maintenance.definitions import defs
    from trading_maintenance.instance_read import DECLARED_OUTSIDE_TABLE
    from trading_maintenance.settings import load_settings

    scheduling = load_settings().maintenance.scheduling
    repo = defs.get_repository_def()
    declared_schedules = {row.name: cron_for(row, scheduling)[0] for row in SCHEDULE_TABLE}
    declared_schedules |= {d.name: d.cron_or_interval for d in DECLARED_OUTSIDE_TABLE if d.kind == "schedule"}
    assert declared_schedules == {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert {s.execution_timezone for s in repo.schedule_defs} == {scheduling.timezone}
    declared_sensors = {d.name: int(d.cron_or_interval) for d in DECLARED_OUTSIDE_TABLE if d.kind == "sensor"}
    assert declared_sensors == {s.name: s.minimum_interval_seconds for s in repo.sensor_defs}
    assert {i.default_status.value for i in [*repo.schedule_defs, *repo.sensor_defs]} == {"RUNNING"}


def test_reading_commands_never_import_the_definitions_or_heavy_libraries(home):
    probe = (
        "import sys\n"
        "from trading_maintenance.cli import main\n"
        "sys.argv = ['trading-maintenance', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    for args in (["status"], ["maintenance", "history", "--task", "data_cleanup"], ["maintenance", "schedule"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "LOADED []" in done.stdout, (args, done.stdout[-500:])


def test_the_sqlite_file_reader_agrees_with_dagsters_storage_classes(instance, home):
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.scheduler.instigation import SensorInstigatorData

    from trading_maintenance.instance_read import DagsterStorageReader, SqliteFilesReader

    @dg.asset(name="system_health")
    def health():
        return dg.MaterializeResult(metadata={"health_score": 55.0, "health_status": "yellow", "reason_list": dg.MetadataValue.json(["x"])})

    assert dg.materialize([health], instance=instance, tags={"maintenance/task": "system_health_check"}).success
    _run_task(instance, "data_cleanup_job", "data_cleanup", succeed=False)
    instance.add_instigator_state(_state("platform_probe_sensor", "SENSOR", "STOPPED", SensorInstigatorData(last_tick_timestamp=1.0, min_interval=60)))
    fast, reference = SqliteFilesReader(home), DagsterStorageReader(InstanceRef.from_dir(str(home)).storage)

    def health_of(reader):
        event = reader.latest_materialization("system_health")
        return event.run_id, event.timestamp, {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}

    assert health_of(fast) == health_of(reference) and health_of(fast)[2]["health_score"] == 55.0
    for tag in (None, ("maintenance/task", "data_cleanup"), ("maintenance/task", "nothing")):
        assert fast.runs(10, tag) == reference.runs(10, tag)
    assert [run.status for run in fast.runs(10)] == ["FAILURE", "SUCCESS"]
    assert fast.tag_values("maintenance/task") == reference.tag_values("maintenance/task") == {"data_cleanup", "system_health_check"}
    assert fast.instigator_states() == reference.instigator_states() and len(fast.instigator_states()) == 1


def test_an_instance_with_its_own_storage_is_read_through_dagster(home):
    from trading_maintenance.instance_read import DagsterStorageReader, SqliteFilesReader, open_reader

    assert isinstance(open_reader()[0], SqliteFilesReader)
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home / 'custom'}\n")
    reader, _state = open_reader()
    assert isinstance(reader, DagsterStorageReader) and reader.runs(5) == []
    assert (home / "custom").is_dir()
