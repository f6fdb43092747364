"""The shape of the code location: loaded from defs/, one file per task, schedules from settings,
the CLI's task table derived from the loaded jobs, every step of a task in the task's pool."""

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

import trading_maintenance.defs as defs_package
from trading_maintenance.core.runs.schedule_table import SCHEDULE_TABLE
from trading_maintenance.definitions import defs
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.tasks import TASKS, tasks_from_jobs
from trading_maintenance_tests.conftest import write_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _defs_modules():
    for info in pkgutil.walk_packages(defs_package.__path__, prefix="trading_maintenance.defs."):
        yield importlib.import_module(info.name)


def _objects(module, kind):
    return [value for value in vars(module).values() if isinstance(value, kind)]


def test_cli_task_table_is_derived_from_the_loaded_jobs():
    repository = defs.get_repository_def()
    tagged = {job.tags["maintenance/task"]: job for job in repository.get_all_jobs() if "maintenance/task" in job.tags}
    assert tasks_from_jobs(repository.get_all_jobs()) == TASKS
    assert set(TASKS) == set(tagged)
    for name, task in TASKS.items():
        job = tagged[name]
        assert task.job_name == job.name and task.description == job.description and task.description
        assert (task.partitioned is not None) == (job.partitions_def is not None), name
    assert TASKS["trading_data_maintenance"].partitioned == "monthly"
    assert TASKS["tradenote_export"].partitioned == "daily"
    assert not TASKS["emergency_maintenance"].in_run_all


def test_every_task_declares_its_job_and_schedule_in_one_file():
    declared = {}
    for module in _defs_modules():
        for task in _objects(module, MaintenanceTask):
            jobs = [job for job in _objects(module, (dg.JobDefinition, UnresolvedAssetJobDefinition))
                    if job.tags.get("maintenance/task") == task.name]
            declared.setdefault(task.name, set()).add(module.__name__)
            if not jobs:
                continue  # an import of a task declared elsewhere
            assert len(jobs) == 1, (task.name, module.__name__)
            rows = [row for row in SCHEDULE_TABLE if row.task == task.name]
            schedules = [s for s in _objects(module, dg.ScheduleDefinition) if s.job_name == jobs[0].name]
            assert [s.name for s in schedules] == [row.name for row in rows], (task.name, module.__name__)
            assert jobs[0].description == task.description
    repository = defs.get_repository_def()
    tasks_with_a_schedule = {row.task for row in SCHEDULE_TABLE}
    assert tasks_with_a_schedule <= set(TASKS), "a schedule row names a task that has no job"
    for row in SCHEDULE_TABLE:
        assert repository.get_schedule_def(row.name).job_name == TASKS[row.task].job_name


def _schedules_under(config_path: Path) -> dict:
    script = (
        "import json\n"
        "from trading_maintenance.definitions import defs\n"
        "print(json.dumps({s.name: [s.cron_schedule, s.execution_timezone] for s in defs.get_repository_def().schedule_defs}))\n"
    )
    env = {"MAINTENANCE_CONFIG": str(config_path), "PATH": "/usr/bin:/bin", "HOME": str(config_path.parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_schedule_follows_the_maintenance_window_and_time_zone(tmp_path, data_dir):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = _schedules_under(write_config(tmp_path / "a", data_dir))
    moved = _schedules_under(write_config(
        tmp_path / "b",
        data_dir,
        maintenance={"scheduling": {"daily_maintenance_hour": 4, "weekly_maintenance_day": "wednesday", "timezone": "Europe/London"}},
    ))
    assert before.keys() == moved.keys()
    rows = {row.name: row for row in SCHEDULE_TABLE}
    for name, (cron, zone) in moved.items():
        assert zone == "Europe/London", name
        assert before[name][1] == "America/New_York", name
        row = rows.get(name)
        if row is not None and row.shape in ("daily_window", "weekly_window"):
            assert cron != before[name][0], f"{name} did not move with the maintenance window"
    assert moved["data_cleanup_schedule"][0] == "0 4 * * *"
    assert moved["security_audit_schedule"][0] == "0 6 * * 3"
    assert moved["backup_archive_schedule"][0] == "30 3 * * 3"
    assert moved["database_maintenance_schedule"][0] == "0 3 * * 3"
    assert moved["market_data_monthly_schedule"][0] == "0 1 * * 3"


def test_every_step_of_a_task_runs_in_the_task_pool():
    repository = defs.get_repository_def()
    for task in TASKS.values():
        job = repository.get_job(task.job_name)
        pools = {node.definition.name: node.definition.pool for node in job.graph.nodes}
        assert pools and all(pool == f"maintenance_{task.name}" for pool in pools.values()), (task.name, pools)
    for key in repository.asset_graph.get_all_asset_keys():
        node = repository.asset_graph.get(key)
        if node.is_materializable:
            assert node.pools, f"{key.to_user_string()} has no pool"


def test_dagster_yaml_limits_each_task_pool_to_one_step():
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1


DATABASE = {"trading_database/orders", "trading_database/fills", "trading_database/positions"}


def _upstream(graph, key: str) -> set[str]:
    return {parent.to_user_string() for parent in graph.get(dg.AssetKey.from_user_string(key)).parent_keys}


def test_every_maintenance_product_is_downstream_of_what_it_reads():
    graph = defs.get_repository_def().asset_graph
    assert _upstream(graph, "system_health") == {"redis_state", "market_data_daily", *DATABASE}
    assert _upstream(graph, "portfolio_reconciliation_report") == {"broker_account", "redis_state", *DATABASE}
    assert _upstream(graph, "security_audit_report") == {"platform_logs", "platform_configuration"}
    assert _upstream(graph, "backup_archive") == {"platform_configuration", "redis_state", "market_data_monthly", *DATABASE}
    assert _upstream(graph, "tradenote_export") == {"trading_database/fills"}
    assert _upstream(graph, "market_data_monthly") == {"market_data_daily"}
    for report in ("maintenance_report_daily", "maintenance_report_weekly"):
        assert "system_health" in _upstream(graph, report)
    for key in ("system_health", "portfolio_reconciliation_report", "backup_archive", "tradenote_export", "market_data_monthly",
                "security_audit_report"):
        assert graph.get(dg.AssetKey.from_user_string(key)).is_materializable, key


def test_every_asset_has_owners_group_kinds_and_a_description():
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.owners == ["team:trading-ops"], name
        assert node.group_name and node.group_name != "default", name
        assert node.kinds, name
        assert node.description and len(node.description) > 40, name


def test_products_on_a_cadence_turn_stale_when_their_schedule_stops():
    graph = defs.get_repository_def().asset_graph
    expected = {"system_health": 2 / 24, "backup_archive": 8, "market_data_monthly": 8, "tradenote_export": 2}
    for key, days in expected.items():
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        assert policy is not None, key
        assert policy.fail_window.to_timedelta().total_seconds() == days * 86400, key


def test_system_health_materializes_through_its_job_and_feeds_the_emergency_sensor(make_resources):
    from trading_maintenance.defs.emergency.sensors import emergency_maintenance_sensor
    from trading_maintenance.defs.health.ops import check_system_health
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def("system_health_check_schedule")
    assert schedule.job_name == "system_health_check_job"
    assert repository.get_job("system_health_check_job").asset_layer.executable_asset_keys == {dg.AssetKey("system_health")}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [check_system_health], resources=make_resources(), instance=instance,
            run_config={"ops": {"check_system_health": {"config": {"send_alerts": False}}}},
        )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        score = event.materialization.metadata["health_score"].value
        settings = make_resources()["settings"]
        context = dg.build_sensor_context(instance=instance, resources={"settings": settings})
        evaluation = emergency_maintenance_sensor.evaluate_tick(context)
        reason = evaluation.skip_message or ""
        launched = bool(evaluation.run_requests)
        threshold = settings.get().maintenance.scheduling.emergency_health_threshold
        assert launched == (score < threshold)
        # the sensor read the materialization the job just recorded
        assert "no health check has been recorded yet" not in reason
        assert launched or reason.startswith("no emergency"), reason


def test_a_dry_run_leaves_no_materialization_and_the_cli_shows_its_plan(make_resources, data_dir, redis_client):
    from trading_maintenance.defs.backups.assets import backup_archive, backup_archive_job
    from trading_maintenance.resources.object_store import ObjectStoreResource
    from trading_maintenance.run_launch import outcome_of
    from trading_maintenance_tests.conftest import run_asset_job

    redis_client.set("positions:AAPL", "10")
    with dg.instance_for_test() as instance:
        result = run_asset_job(
            backup_archive_job, [backup_archive], make_resources("", object_store=ObjectStoreResource()), instance=instance,
            run_config={"ops": {"backup_archive": {"config": {"dry_run": True}}}},
        )
        assert result.success and not result.get_asset_materialization_events()
        assert instance.get_latest_materialization_event(dg.AssetKey("backup_archive")) is None
        (plan,) = outcome_of(instance, result.run_id).dry_run_plans
    assert plan.startswith("backup_archive: would back up parts:") and "whole plan: maintenance:result:backup in Redis" in plan
    assert not (data_dir / "backups").exists() or not any((data_dir / "backups").iterdir())


def test_conclude_publishes_then_fails_without_carrying_the_error_it_handled(redis_client):
    from dagster._utils.error import serializable_error_info_from_exc_info

    from trading_maintenance.defs.common import conclude

    class Context:
        run_id = "run-1"
        log = __import__("logging").getLogger("test")

    secret = "hunter2-password"
    try:
        try:
            raise ConnectionError(f"could not connect with {secret}")
        except ConnectionError:
            conclude(Context(), redis_client, "demo_task", {"status": "failed", "run_id": "run-1"}, failure="store unavailable")
    except dg.Failure as failure:
        info = serializable_error_info_from_exc_info((type(failure), failure, failure.__traceback__))
        assert secret not in info.to_string() and "store unavailable" in info.to_string()
    else:
        raise AssertionError("conclude did not fail the run")
    assert json.loads(redis_client.get("maintenance:result:demo_task"))["status"] == "failed"
    assert conclude(Context(), redis_client, "demo_task", {"status": "success", "run_id": "run-2"}) is True


def test_no_issue_numbers_or_markdown_helper_named_md_in_the_code():
    import re

    package = PROJECT_ROOT / "trading_maintenance"
    offenders = [str(path.relative_to(PROJECT_ROOT)) for path in package.rglob("*.py")
                 if re.search(r"\(issue \d+\)|\bmd_table\b", path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_definitions_load_without_the_http_and_redis_clients_and_terminal_libraries():
    # httpx pulls in rich and pygments (its command line); the resources import httpx and redis-py
    # with their first request
    script = "import sys, trading_maintenance.definitions; print(sorted(m for m in ('httpx', 'rich', 'pygments', 'redis') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_definitions_carry_no_catalogue_of_installed_component_types():
    # building the catalogue (every installed package's component types, with sample YAML) cost a
    # quarter of the load; nothing here declares a component
    from dagster.components.core.load_defs import PLUGIN_COMPONENT_TYPES_JSON_METADATA_KEY

    assert PLUGIN_COMPONENT_TYPES_JSON_METADATA_KEY not in (defs.metadata or {})
    assert TASKS and defs.get_repository_def().get_all_jobs()
