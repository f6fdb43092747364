"""backup_archive_job and backup_verification_job in-process against real Redis, PostgreSQL, S3 (moto server)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from trading_maintenance.core.backups.archive import list_local_backups
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.snapshots import list_snapshots
from trading_maintenance.definitions import defs as all_defs
from trading_maintenance.defs.backups.assets import BACKUP_ASSET, backup_archive, backup_archive_job, backup_archive_schedule
from trading_maintenance.defs.backups.checks import LAST_RESTORE_KEY, backup_verification_job, restore_drill
from trading_maintenance.defs.backups.sensors import backup_verification_sensor
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance_tests.backups.conftest import fill_database, fill_redis, fill_trading_data
from trading_maintenance_tests.conftest import write_config

KEY = "a-long-backup-encryption-key-for-tests"


def _defs(resources):
    return dg.Definitions(
        assets=[backup_archive], asset_checks=[restore_drill], jobs=[backup_archive_job, backup_verification_job],
        sensors=[backup_verification_sensor], resources=resources,
    )


@pytest.fixture
def setup(tmp_path, data_dir, make_resources, pg_url, pg_engine, redis_client, spare_redis_url, s3_endpoint, s3_bucket):
    fill_redis(redis_client)
    fill_database(pg_engine)
    fill_trading_data(data_dir)
    config = write_config(tmp_path, data_dir, backup={
        "remote_enabled": True, "s3_bucket": s3_bucket, "s3_endpoint_url": s3_endpoint, "encryption_key": KEY,
        "drill_redis_url": spare_redis_url,
    })
    store = ObjectStoreResource(enabled=True, bucket=s3_bucket, endpoint_url=s3_endpoint, access_key_id="testing",
                                secret_access_key="testing")
    return _defs(make_resources(pg_url, config, object_store=store)), store


def test_backup_then_drill_records_passing_asset_check(setup, data_dir, redis_client, pg_url):
    defs, store = setup
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("backup_archive_job").execute_in_process(instance=instance)
        assert result.success
        assert list_local_backups(data_dir / "backups") == []  # a snapshot in the repository, no archive
        repo = Repository.open_or_create(data_dir / "backups", KEY, create=False)
        refs = list_snapshots(repo).refs
        assert len(refs) == 1 and refs[0].encrypted
        assert [r.backup_id for r in store.repository(repo).list_snapshots().refs] == [refs[0].backup_id]
        published = json.loads(redis_client.get("maintenance:result:backup"))
        assert published["status"] == "success" and published["verified"] and published["remote_verified"]
        assert KEY not in json.dumps(published)
        mat = instance.get_latest_materialization_event(BACKUP_ASSET).asset_materialization
        from sqlalchemy import create_engine

        from trading_maintenance.core.backups import database as bdb
        from trading_maintenance.core.backups import postgres_dump

        engine = create_engine(pg_url)
        expected_method = postgres_dump.choose_pg_method(bdb.server_version(engine))[0]  # pg_dump when one matches the server
        engine.dispose()
        assert mat.metadata["redis_keys"].value >= 10 and mat.metadata["database_method"].value == expected_method
        assert mat.metadata["compression_ratio"].value > 0

        again = defs.resolve_job_def("backup_archive_job").execute_in_process(instance=instance)
        assert again.success  # a second backup stores only what changed and sends only that
        second = json.loads(redis_client.get("maintenance:result:backup"))
        assert second["archive_bytes"] < published["archive_bytes"] and second["remote_new_bytes"] < published["remote_new_bytes"]
        refs = list_snapshots(repo).refs
        assert len(refs) == 2
        result = again

        drill = defs.resolve_job_def("backup_verification_job").execute_in_process(instance=instance)
        assert drill.success
        evaluations = [e.event_specific_data for e in drill.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert len(evaluations) == 1 and evaluations[0].passed
        assert evaluations[0].metadata["last_successful_restore"].value != "never"
        assert json.loads(redis_client.get(LAST_RESTORE_KEY))["backup_id"] == refs[-1].backup_id  # the newest snapshot
        report = json.loads(redis_client.get("maintenance:result:backup_verification"))
        assert {c["part"] for c in report["checks"]} == {"archive", "config", "redis", "database", "trading_data"}

        # the sensor asks for one drill per real materialization, and says why when there is nothing new
        ctx = dg.build_sensor_context(instance=instance, definitions=defs)
        tick = backup_verification_sensor.evaluate_tick(ctx)
        assert [r.run_key for r in tick.run_requests] == [f"restore-drill-{result.run_id}"]


def test_drill_of_tampered_backup_fails_and_alerts(setup, data_dir, redis_client):
    defs, _ = setup
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("backup_archive_job").execute_in_process(instance=instance).success
        repo = Repository.open_or_create(data_dir / "backups", KEY, create=False)
        for pack in repo.pack_ids():
            path = repo.pack_path(pack)
            data = bytearray(path.read_bytes())
            data[len(data) // 3] ^= 0xFF
            path.write_bytes(bytes(data))
        drill = defs.resolve_job_def("backup_verification_job").execute_in_process(instance=instance, raise_on_error=False)
        assert not drill.success
        evaluations = [e.event_specific_data for e in drill.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert len(evaluations) == 1 and not evaluations[0].passed
        alerts = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
        assert any(a["key"] == "backup:drill_failed" for a in alerts)
        assert json.loads(redis_client.get("maintenance:result:backup_verification"))["status"] == "failed"


def test_dry_run_writes_nothing(tmp_path, data_dir, make_resources, redis_client):
    fill_redis(redis_client)
    fill_trading_data(data_dir)
    defs = _defs(make_resources("", object_store=ObjectStoreResource()))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("backup_archive_job").execute_in_process(
            instance=instance, run_config={"ops": {"backup_archive": {"config": {"dry_run": True}}}}
        )
        assert result.success
        assert not (data_dir / "backups").exists() or not any((data_dir / "backups").iterdir())
        published = json.loads(redis_client.get("maintenance:result:backup"))
        assert published["dry_run"] and published["trading_files"] == 4 and published["redis_keys"] == 10
        # a dry run records its plan, never a backup: no materialization for the restore drill to follow
        assert not result.get_asset_materialization_events()
        (observation,) = [e.asset_observation_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        assert observation.metadata["dry_run"].value and observation.metadata["would_back_up_trading_files"].value == 4
        ctx = dg.build_sensor_context(instance=instance, definitions=defs)
        assert not backup_verification_sensor.evaluate_tick(ctx).run_requests


def test_definitions_schedule_and_names():
    assert backup_archive_schedule.cron_schedule == "30 1 * * 0"
    assert backup_archive_schedule.execution_timezone == "America/New_York"
    assert backup_archive_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert backup_archive_job.name == "backup_archive_job" and backup_verification_job.name == "backup_verification_job"
    from trading_maintenance.tasks import resolve_task

    assert resolve_task("backup_critical_data").job_name == backup_archive_job.name
    assert all_defs.resolve_job_def("backup_verification_job").tags["maintenance/task"] == "backup_verification"
