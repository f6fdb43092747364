"""The repository's copy in the object store (moto server): incremental upload, listing by snapshot
time, remote retention, and a downloaded copy that restores; archives listed by manifest time."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import boto3

from trading_maintenance.core.backups.archive import new_backup_id
from trading_maintenance.core.backups.archive_writer import ArchiveWriter
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.snapshots import check_repository, stage_snapshot
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance_tests.backups.repository_helpers import backup_tree, write_tree

KEY = "remote-repository-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def _store(endpoint, bucket) -> ObjectStoreResource:
    return ObjectStoreResource(enabled=True, bucket=bucket, endpoint_url=endpoint, access_key_id="testing",
                               secret_access_key="testing", prefix="tm/")


def _download(remote, dest):
    """The remote copy as a local folder, object by object."""
    client = remote.client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=remote.bucket, Prefix=remote.prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(remote.prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.get_object(Bucket=remote.bucket, Key=obj["Key"])["Body"].read())


def _tree(data_dir, files=4, size=200_000):
    return write_tree(data_dir, files, size)


def _backup(repo, data_dir, tmp_path, now):
    return backup_tree(repo, data_dir, tmp_path, now, KEY)


def test_mirror_uploads_only_what_is_new_and_the_copy_restores(tmp_path, data_dir, s3_endpoint, s3_bucket):
    files = _tree(data_dir)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = _backup(repo, data_dir, tmp_path, NOW - timedelta(days=1))
    remote = _store(s3_endpoint, s3_bucket).repository(repo)
    sent = remote.mirror(30, NOW)
    assert sent.snapshots == [first.archive.backup_id] and sent.packs == len(repo.pack_ids())
    assert remote.mirror(30, NOW).bytes == 0  # everything already there: nothing sent again

    files[1].write_bytes(os.urandom(200_000))
    second = _backup(repo, data_dir, tmp_path, NOW)
    again = remote.mirror(30, NOW)
    assert again.snapshots == [second.archive.backup_id]
    assert 0 < again.bytes < sent.bytes / 2  # one changed file of four
    assert [r.backup_id for r in remote.list_snapshots().refs] == [first.archive.backup_id, second.archive.backup_id]

    copy_root = tmp_path / "copy"
    _download(remote, copy_root / "repository")
    copy = Repository.open_or_create(copy_root, KEY, create=False)
    assert check_repository(copy, read_data=True) == []
    staged = stage_snapshot(copy, second.archive.name, tmp_path / "stage")
    assert staged.staged[f"data/{files[1].relative_to(data_dir).as_posix()}"].read_bytes() == files[1].read_bytes()


def test_remote_retention_forgets_old_snapshots_prunes_their_packs_and_is_not_undone(tmp_path, data_dir, s3_endpoint, s3_bucket):
    files = _tree(data_dir, files=2)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    old = _backup(repo, data_dir, tmp_path, NOW - timedelta(days=40))
    remote = _store(s3_endpoint, s3_bucket).repository(repo)
    remote.mirror(30, NOW - timedelta(days=40))
    for p in files:
        p.write_bytes(os.urandom(200_000))
    new = _backup(repo, data_dir, tmp_path, NOW)
    remote.mirror(30, NOW)
    packs_before = set(remote.objects("data"))

    dry = remote.forget_and_prune(30, NOW, dry_run=True)
    assert dry.forgotten == [old.archive.backup_id] and set(remote.objects("data")) == packs_before
    done = remote.forget_and_prune(30, NOW)
    assert done.forgotten == [old.archive.backup_id] and done.removed_packs >= 1 and done.freed_bytes > 0
    assert [r.backup_id for r in remote.list_snapshots().refs] == [new.archive.backup_id]
    assert len(repo.snapshot_ids()) == 2  # the local repository keeps its own retention
    assert remote.mirror(30, NOW).snapshots == []  # the forgotten snapshot is not sent back

    copy_root = tmp_path / "copy"
    _download(remote, copy_root / "repository")
    assert check_repository(Repository.open_or_create(copy_root, KEY, create=False), read_data=True) == []


def test_archives_in_the_store_are_listed_by_their_manifest_time_not_their_name(tmp_path, s3_endpoint, s3_bucket):
    store = _store(s3_endpoint, s3_bucket)
    made = []
    for created in (NOW, NOW - timedelta(days=2)):
        with ArchiveWriter(tmp_path / "out", new_backup_id(created), "tar.zst", None) as writer:
            writer.add_bytes("data/exports/a.csv", b"x" * 100, "trading_data")
            made.append((writer.finish({"created_at": created.isoformat()}), created))
    # The newer backup's archive carries an older-looking name (copied in by hand, renamed, restored from elsewhere).
    newer, older = made
    renamed = newer[0].path.replace("backup-" + newer[0].backup_id, "backup-" + new_backup_id(NOW - timedelta(days=5)))
    os.rename(newer[0].path, renamed)
    store.upload(renamed, newer[0].sha256, newer[0].backup_id, newer[1])
    store.upload(older[0].path, older[0].sha256, older[0].backup_id, older[1])
    assert [r.backup_id for r in store.list_backups()] == [older[0].backup_id, newer[0].backup_id]
    assert store.list_backups()[-1].created_at == NOW


def test_objects_in_other_places_are_ignored(tmp_path, data_dir, s3_endpoint, s3_bucket):
    _tree(data_dir, files=1)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    _backup(repo, data_dir, tmp_path, NOW)
    remote = _store(s3_endpoint, s3_bucket).repository(repo)
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.put_object(Bucket=s3_bucket, Key="tm/repository/snapshots/../../evil", Body=b"x")
    client.put_object(Bucket=s3_bucket, Key="tm/repository/snapshots/" + "a" * 64 + ".bak", Body=b"x")
    remote.mirror(30, NOW)
    assert len(remote.list_snapshots().refs) == 1 and not remote.list_snapshots().problems


def test_cli_lists_remote_snapshots(tmp_path, data_dir, s3_endpoint, s3_bucket, monkeypatch):
    import click
    from click.testing import CliRunner

    from trading_maintenance.cli_ext.backups import register
    from trading_maintenance_tests.conftest import write_config

    for var in ("DATABASE_URL", "BACKUP_ENCRYPTION_KEY", "TRADING_DATA_DIR", "BACKUP_REMOTE_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, data_dir, backup={
        "remote_enabled": True, "s3_bucket": s3_bucket, "s3_endpoint_url": s3_endpoint, "encryption_key": KEY,
        "s3_prefix": "tm/"})))
    _tree(data_dir, files=2)
    repo = Repository.open_or_create(data_dir / "backups", KEY)
    first = _backup(repo, data_dir, tmp_path, NOW)
    _store(s3_endpoint, s3_bucket).repository(repo).mirror(30, NOW)
    group = click.Group("trading-maintenance")
    register(group)
    listed = CliRunner().invoke(group, ["backups", "list", "--remote"])
    assert listed.exit_code == 0, listed.output
    assert f"remote {first.archive.name[:16]}  {first.archive.backup_id}" in listed.output
