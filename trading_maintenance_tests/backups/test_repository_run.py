"""A backup into the repository from start to finish (verify, copy to the store, retention local and
remote), and the restore_drill asset check restoring the newest snapshot."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.repository_run import back_up_to_repository
from trading_maintenance.core.backups.run import collect_trading_files
from trading_maintenance.core.backups.snapshots import list_snapshots
from trading_maintenance.defs.backups.checks import LAST_RESTORE_KEY, backup_verification_job, restore_drill
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance_tests.backups.conftest import fill_trading_data
from trading_maintenance_tests.conftest import write_config

KEY = "a-long-backup-encryption-key-for-tests"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def _run(data_dir, now, remote=None, local_days=7):
    files, _, _ = collect_trading_files(data_dir, ["parquet", "exports", "reports"], 0, now)
    return back_up_to_repository(backups_dir=data_dir / "backups", secret=KEY, now=now, local_retention_days=local_days,
                                 remote=remote, remote_retention_days=30, parts=["config", "trading_data"], config_path=None,
                                 effective_settings={"a": 1}, secret_keys=set(), data_dir=data_dir, trading_files=files,
                                 work_root=data_dir / "temp")


def test_backup_run_copies_to_the_store_then_applies_both_retentions(data_dir, s3_endpoint, s3_bucket):
    fill_trading_data(data_dir, NOW.date())
    store = ObjectStoreResource(enabled=True, bucket=s3_bucket, endpoint_url=s3_endpoint, access_key_id="testing",
                                secret_access_key="testing")
    old = _run(data_dir, NOW - timedelta(days=40), store.repository)
    assert old.after.verified and not old.after.problems and old.after.remote["snapshots"] == [old.outcome.archive.backup_id]
    (data_dir / "exports/tradenote/2026-11-20.csv").write_bytes(b"changed")
    new = _run(data_dir, NOW, store.repository)
    assert new.after.verified and not new.after.problems, new.after.problems
    assert new.after.local_forgotten == [old.outcome.archive.backup_id]
    assert new.after.remote_forgotten == [old.outcome.archive.backup_id]
    repo = Repository.open_or_create(data_dir / "backups", KEY, create=False)
    assert [r.backup_id for r in list_snapshots(repo).refs] == [new.outcome.archive.backup_id]
    assert [r.backup_id for r in store.repository(repo).list_snapshots().refs] == [new.outcome.archive.backup_id]
    assert KEY not in json.dumps(new.summary(), default=str)


def test_restore_drill_check_restores_the_newest_snapshot(tmp_path, data_dir, make_resources, redis_client, spare_redis_url):
    fill_trading_data(data_dir, NOW.date())
    _run(data_dir, NOW - timedelta(days=1))
    (data_dir / "exports/tradenote/2026-11-20.csv").write_bytes(b"newer")
    newest = _run(data_dir, NOW)
    config = write_config(tmp_path, data_dir, backup={"encryption_key": KEY, "drill_redis_url": spare_redis_url})
    defs = dg.Definitions(asset_checks=[restore_drill], jobs=[backup_verification_job],
                          resources=make_resources("", config, object_store=ObjectStoreResource()))
    with dg.instance_for_test() as instance:
        drill = defs.resolve_job_def("backup_verification_job").execute_in_process(instance=instance)
        assert drill.success
        assert json.loads(redis_client.get(LAST_RESTORE_KEY))["backup_id"] == newest.outcome.archive.backup_id
        report = json.loads(redis_client.get("maintenance:result:backup_verification"))
        assert {c["part"] for c in report["checks"]} == {"archive", "config", "trading_data"}

        repo = Repository.open_or_create(data_dir / "backups", KEY, create=False)
        for pack in repo.pack_ids():  # a damaged repository fails the drill, it is never passed over
            path = repo.pack_path(pack)
            raw = bytearray(path.read_bytes())
            raw[20] ^= 0xFF
            path.write_bytes(bytes(raw))
        failed = defs.resolve_job_def("backup_verification_job").execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        assert json.loads(redis_client.get("maintenance:result:backup_verification"))["status"] == "failed"
