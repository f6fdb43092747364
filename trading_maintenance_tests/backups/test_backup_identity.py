"""Backups are identified by their verified manifest, ids are unique, temporaries belong to live
writers only, configuration copies are masked as YAML, and the CLI says what it means."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from trading_maintenance.core.backups.archive import ArchiveError, list_local_backups, new_backup_id, plan_backup_retention, select_backup
from trading_maintenance.core.backups.archive_reader import identify_local_backups
from trading_maintenance.core.backups.archive_writer import ArchiveWriter
from trading_maintenance.core.backups.config_mask import MASKED, mask_config_text, unmask_config_text
from trading_maintenance.core.backups.temporaries import owned_temp_dir, remove_dead_temporaries
from trading_maintenance.settings import SECRET_KEYS
from trading_maintenance_tests.conftest import write_config

NOW = datetime(2026, 11, 29, 6, 30, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


def _archive(dest: Path, created: datetime, payload: bytes = b"x") -> Path:
    with ArchiveWriter(dest, new_backup_id(created), "tar.zst") as writer:
        writer.add_bytes("data/exports/a.csv", payload, "trading_data")
        return Path(writer.finish({"created_at": created.isoformat()}).path)


@pytest.mark.parametrize("copy_name", ["backup-20991231T235959Z.tar.zst", "backup-20000101T000000Z.tar.zst"])
def test_a_misnamed_copy_is_ordered_and_expired_by_its_manifest(tmp_path, copy_name):
    dest = tmp_path / "backups"
    old = _archive(dest, NOW - timedelta(days=40), b"old")
    newest = _archive(dest, NOW - timedelta(days=1), b"new")
    shutil.copy(old, dest / copy_name)  # a copy of the 40-day-old backup under a misleading name

    listing = identify_local_backups(dest, None)
    assert [p for p in listing.problems if copy_name in p and "manifest says backup" in p]
    assert select_backup(listing.refs, "latest").location == str(newest)
    plan = plan_backup_retention(listing.refs, 7, NOW)
    assert sorted(Path(r.location).name for r in plan.delete) == sorted([old.name, copy_name])
    assert [Path(r.location).name for r in plan.keep] == [newest.name]


def test_an_unreadable_archive_is_left_out_and_reported(tmp_path):
    dest = tmp_path / "backups"
    good = _archive(dest, NOW - timedelta(days=2))
    (dest / "backup-20991231T000000Z.tar.zst").write_bytes(b"not an archive")
    listing = identify_local_backups(dest, None)
    assert [r.location for r in listing.refs] == [str(good)]
    assert listing.unreadable == ["backup-20991231T000000Z.tar.zst"]


def test_concurrent_writers_get_distinct_ids_and_never_replace_an_archive(tmp_path):
    dest = tmp_path / "backups"
    same_second = new_backup_id(NOW)
    barrier = threading.Barrier(6)
    results, errors = [], []

    def write(i: int) -> None:
        try:
            barrier.wait()
            with ArchiveWriter(dest, same_second, "tar.zst") as writer:
                writer.add_bytes("data/exports/a.csv", f"writer {i}".encode(), "trading_data")
                results.append(writer.finish({"created_at": NOW.isoformat()}))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.backup_id for r in results}) == 6 and len({r.path for r in results}) == 6
    assert len(list_local_backups(dest)) == 6
    assert {r.backup_id for r in results} == {r.backup_id for r in identify_local_backups(dest, None).refs}


def test_publishing_refuses_to_replace_an_existing_archive(tmp_path):
    dest = tmp_path / "backups"
    other = _archive(tmp_path / "elsewhere", NOW, b"first")
    writer = ArchiveWriter(dest, "20261129T063000Z", "tar.zst")
    writer.add_bytes("data/exports/a.csv", b"second", "trading_data")
    first = Path(shutil.copy(other, writer.final_path))  # a copy put there while the backup was running
    before = first.read_bytes()
    with pytest.raises(ArchiveError, match="already exists"):
        with writer:
            writer.finish({"created_at": NOW.isoformat()})
    assert first.read_bytes() == before
    assert [p.name for p in dest.iterdir()] == [first.name]


def test_killed_backup_work_folder_is_removed_and_a_live_one_kept(tmp_path):
    root = tmp_path / "backups"
    script = textwrap.dedent(f"""
        import os, signal
        from trading_maintenance.core.backups.archive import WORK_PREFIX
        from trading_maintenance.core.backups.temporaries import owned_temp_dir
        with owned_temp_dir({str(root)!r}, WORK_PREFIX) as work:
            (work / "keys.jsonl").write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    dead = [p for p in root.iterdir()]
    assert len(dead) == 1 and dead[0].name.startswith(".backup-work-")
    with owned_temp_dir(root, ".backup-work-") as live:
        assert remove_dead_temporaries(root) == [str(dead[0])]
        assert live.is_dir()
    assert list(root.iterdir()) == []


def test_temporary_files_are_never_listed_or_restored(tmp_path, data_dir):
    from trading_maintenance.core.backups.restore import restore_backup

    dest = data_dir / "backups"
    good = _archive(dest, NOW)
    partial = dest / f".{good.name}.partial"
    shutil.copy(good, partial)
    assert [r.name for r in list_local_backups(dest)] == [good.name]
    with pytest.raises(ArchiveError, match="temporary file of an unfinished backup"):
        restore_backup(partial, None, {"trading_data"}, stage_root=data_dir / "temp", data_dir=data_dir)


@pytest.mark.parametrize("text,secret", [
    ("redis: {url: 'redis://:fl0wpass@h:6379/0', max_connections: 20}\n", "fl0wpass"),
    ("broker:\n  secret_key: >-\n    blockscalarsecret\n    continued\n  base_url: https://paper\n", "blockscalarsecret"),
    ("broker:\n  secret_key: |\n    literalsecret\n", "literalsecret"),
    ('notifications: {"smtp_password": "q\\"uoted-pw"}\n', "uoted-pw"),
    ("extra:\n  - name: feed\n    api_token: listtoken123\n", "listtoken123"),
    ("custom:\n  feed_url: postgresql://u:urlpw9@db/x\n", "urlpw9"),
    ("anchors:\n  base: &k anchoredsecret\nbackup:\n  encryption_key: *k\n", "anchoredsecret"),
])
def test_config_copy_is_masked_as_parsed_yaml(text, secret):
    masked, keys = mask_config_text(text, SECRET_KEYS)
    assert isinstance(yaml.safe_load(masked), dict) and keys
    assert secret not in masked
    assert MASKED in masked


def test_masked_config_restores_current_secrets_and_stays_valid_yaml():
    backup = "redis: {url: 'redis://:old@h:6379/0', max_connections: 7}\nbroker:\n  secret_key: >-\n    oldsecret\n"
    masked, _ = mask_config_text(backup, SECRET_KEYS)
    current = "redis:\n  url: redis://:newpass@h:6379/0\n  max_connections: 20\nbroker:\n  secret_key: newsecret\n"
    restored = yaml.safe_load(unmask_config_text(masked, current))
    assert restored == {"redis": {"url": "redis://:newpass@h:6379/0", "max_connections": 7}, "broker": {"secret_key": "newsecret"}}
    assert yaml.safe_load(unmask_config_text(masked, "")) == {"redis": {"url": None, "max_connections": 7},
                                                               "broker": {"secret_key": None}}


def test_unparsable_config_is_never_copied_as_is():
    from trading_maintenance.core.backups.config_mask import ConfigMaskError

    with pytest.raises(ConfigMaskError, match="not valid YAML"):
        mask_config_text("redis:\n  url: [redis://:pw@h\n", SECRET_KEYS)


@pytest.fixture
def cli(tmp_path, data_dir, redis_url, monkeypatch):
    config = write_config(tmp_path, data_dir, redis={"url": redis_url})
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(config))
    for var in ("REDIS_URL", "DATABASE_URL", "BACKUP_ENCRYPTION_KEY", "TRADING_DATA_DIR", "BACKUP_REMOTE_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    from trading_maintenance.cli_ext.backups import register

    group = click.Group("trading-maintenance")
    register(group)
    return group, config


def test_cli_says_what_it_means(cli, data_dir, redis_client):
    from trading_maintenance.core.backups.run import create_backup

    group, config = cli
    runner = CliRunner()
    empty = runner.invoke(group, ["backups", "list"])
    assert empty.exit_code == 0 and f"no backups in {data_dir / 'backups'}" in empty.output
    remote = runner.invoke(group, ["backups", "list", "--remote"])
    assert remote.exit_code == 2 and "remote: storage is off" in remote.output

    redis_client.set("portfolio:cash_balance", "1")
    create_backup(dest_dir=data_dir / "backups", fmt="tar.zst", secret=None, parts=["config", "redis"], config_path=config,
                  effective_settings={}, secret_keys=SECRET_KEYS, redis_client=redis_client)
    dry = runner.invoke(group, ["restore", "--type", "all", "--dry-run", "--force"])
    assert dry.exit_code == 0, dry.output
    assert "config: no change:" in dry.output and "already matches the backup" in dry.output
    assert "redis: would write 1 keys: 0 new, 1 replacing existing keys" in dry.output
    assert "trading_data: nothing to restore" in dry.output and '{"action"' not in dry.output
