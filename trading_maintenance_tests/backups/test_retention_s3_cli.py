"""Retention at its boundaries, S3 round trip (moto server), a killed backup, config masking, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trading_maintenance.core.backups.archive import ArchiveError, BackupRef, list_local_backups, new_backup_id, plan_backup_retention
from trading_maintenance.core.backups.archive_reader import verify_archive
from trading_maintenance.core.backups.archive_writer import ArchiveWriter
from trading_maintenance.core.backups.config_mask import MASKED, mask_config_text, unmask_config_text
from trading_maintenance.core.backups.temporaries import remove_dead_temporaries
from trading_maintenance.resources.object_store import ObjectStoreResource
from trading_maintenance_tests.backups.conftest import fill_redis
from trading_maintenance_tests.conftest import write_config

NOW = datetime(2026, 11, 29, 6, 30, tzinfo=timezone.utc)


def _ref(delta: timedelta) -> BackupRef:
    created = NOW - delta
    bid = new_backup_id(created)
    return BackupRef(bid, f"backup-{bid}.tar.zst", created)


def test_retention_keeps_exactly_what_it_should_at_the_boundaries():
    at_cutoff = _ref(timedelta(days=7))
    just_past = _ref(timedelta(days=7, seconds=1))
    recent = _ref(timedelta(days=1))
    old = _ref(timedelta(days=30))
    plan = plan_backup_retention([old, just_past, at_cutoff, recent], 7, NOW)
    assert [r.backup_id for r in plan.keep] == [at_cutoff.backup_id, recent.backup_id]
    assert [r.backup_id for r in plan.delete] == [old.backup_id, just_past.backup_id]


def test_retention_never_deletes_the_newest_or_protected_backup():
    only_old = [_ref(timedelta(days=40)), _ref(timedelta(days=20))]
    plan = plan_backup_retention(only_old, 7, NOW)
    assert [r.backup_id for r in plan.keep] == [only_old[1].backup_id]
    plan = plan_backup_retention(only_old, 7, NOW, protect={only_old[0].backup_id})
    assert not plan.delete
    assert plan_backup_retention([], 7, NOW).keep == []


def _archive(dest: Path, created: datetime, payload: bytes = b"x" * 1000, secret=None) -> Path:
    with ArchiveWriter(dest, new_backup_id(created), "tar.zst", secret) as writer:
        writer.add_bytes("data/exports/a.csv", payload, "trading_data")
        return Path(writer.finish({"created_at": created.isoformat()}).path)


def test_s3_upload_list_download_and_retention(tmp_path, s3_endpoint, s3_bucket):
    store = ObjectStoreResource(enabled=True, bucket=s3_bucket, endpoint_url=s3_endpoint, access_key_id="testing",
                                secret_access_key="testing", prefix="prod/", multipart_threshold_mb=5)
    local = tmp_path / "backups"
    ages = [timedelta(days=31), timedelta(days=30), timedelta(days=2)]
    archives = [_archive(local, NOW - age) for age in ages]
    big = _archive(local, NOW, os.urandom(12 * 1024 * 1024))  # multipart: 12 MiB over a 5 MiB threshold
    from trading_maintenance.core.backups.archive_reader import sha256_file

    for path in [*archives, big]:
        sha = sha256_file(path)
        store.upload(path, sha)
        assert store.verify(path.name, path.stat().st_size, sha) == []
    assert store.verify(big.name, big.stat().st_size, "0" * 64)  # a wrong checksum is caught
    listed = store.list_backups()
    assert [r.name for r in listed] == [p.name for p in [*archives, big]]

    downloaded = store.download(big.name, tmp_path / "dl" / big.name)
    assert sha256_file(downloaded) == sha256_file(big)
    assert verify_archive(downloaded).manifest["backup_id"] == big.name.split("-", 1)[1].split(".")[0]

    plan = plan_backup_retention(listed, 30, NOW, protect={listed[-1].backup_id})
    assert [r.name for r in plan.delete] == [archives[0].name]  # 31 days: gone; exactly 30: kept
    for ref in plan.delete:
        store.delete(ref.name)
    assert [r.name for r in store.list_backups()] == [p.name for p in [*archives[1:], big]]


def test_killed_backup_leaves_no_valid_looking_archive(tmp_path):
    dest = tmp_path / "backups"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 * 1024 * 1024))
    script = textwrap.dedent(f"""
        import os, signal
        from trading_maintenance.core.backups.archive_writer import ArchiveWriter
        w = ArchiveWriter({str(dest)!r}, "20261129T063000Z", "tar.zst", "k" * 20)
        w.add_file("data/big.bin", {str(big)!r}, "trading_data")
        w.add_file("data/big2.bin", {str(big)!r}, "trading_data")
        os.kill(os.getpid(), signal.SIGKILL)  # killed before the manifest and the rename
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL
    leftovers = list(dest.iterdir())
    assert leftovers and all(p.name.startswith(".") and p.name.endswith(".partial") for p in leftovers)
    assert list_local_backups(dest) == []
    with pytest.raises(ArchiveError):
        verify_archive(leftovers[0], "k" * 20)
    live = ArchiveWriter(dest, "20261129T063000Z", "tar.zst")  # a concurrent backup still running
    try:
        assert remove_dead_temporaries(dest) == [str(leftovers[0])]  # the dead writer's, however young
        assert live.tmp_path.exists() and live.backup_id == "20261129T063000Z"
    finally:
        live.abort()


def test_config_secrets_are_masked_and_come_back_from_the_current_file():
    from trading_maintenance.settings import SECRET_KEYS

    text = (
        "redis:\n  url: redis://:pw123456@h:6379/0  # REDIS_URL\n  max_connections: 20\n"
        "backup:\n  encryption_key: s3cr3t-key\n  format: tar.gz\nnotifications:\n  webhook_url:\n"
    )
    masked, keys = mask_config_text(text, SECRET_KEYS)
    assert "pw123456" not in masked and "s3cr3t-key" not in masked and MASKED in masked
    assert set(keys) == {"redis.url", "backup.encryption_key"}
    assert "max_connections: 20" in masked
    current = "redis:\n  url: redis://:newpass99@h:6379/0\nbackup:\n  format: tar.zst\n"
    restored = unmask_config_text(masked, current)
    assert "redis://:newpass99@h:6379/0" in restored and MASKED not in restored
    assert "format: tar.gz" in restored and "encryption_key:" in restored and "s3cr3t" not in restored


@pytest.fixture
def cli_env(tmp_path, data_dir, redis_url, monkeypatch):
    config = write_config(tmp_path, data_dir, redis={"url": redis_url})
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(config))
    for var in ("REDIS_URL", "DATABASE_URL", "BACKUP_ENCRYPTION_KEY", "TRADING_DATA_DIR", "BACKUP_REMOTE_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    from trading_maintenance.cli_ext.backups import register

    group = click.Group("trading-maintenance")
    register(group)
    return group, config


def test_restore_cli_dry_run_real_and_refusal(cli_env, data_dir, redis_client):
    from trading_maintenance.core.backups.run import create_backup
    from trading_maintenance.settings import SECRET_KEYS

    group, config = cli_env
    fill_redis(redis_client)
    outcome = create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=None, parts=["config", "redis"],
                            config_path=config, effective_settings={}, secret_keys=SECRET_KEYS, redis_client=redis_client)
    redis_client.flushdb()
    runner = CliRunner()
    dry = runner.invoke(group, ["restore", "--type", "redis", "--backup", "latest", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "nothing was changed" in dry.output and redis_client.dbsize() == 0
    real = runner.invoke(group, ["restore", "--type", "redis", "--backup", outcome.archive.backup_id])
    assert real.exit_code == 0, real.output
    assert redis_client.dbsize() == 10 and redis_client.ttl("session:abc") > 0
    again = runner.invoke(group, ["restore", "--type", "redis"])
    assert again.exit_code == 3 and "already exist" in again.output

    archive = Path(outcome.archive.path)
    with open(archive, "r+b") as handle:
        handle.truncate(archive.stat().st_size // 2)
    redis_client.flushdb()
    cut = runner.invoke(group, ["restore", "--type", "all", "--backup", str(archive), "--force"])
    assert cut.exit_code == 3 and "refused" in cut.output and redis_client.dbsize() == 0
    missing = runner.invoke(group, ["restore", "--type", "config", "--date", "2001-01-01"])
    assert missing.exit_code == 3 and "no backup was made on 2001-01-01" in missing.output
