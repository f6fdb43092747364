"""Round trips through real Redis, real PostgreSQL and files; refusals leave everything unchanged."""

from __future__ import annotations

import io
import stat
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.backups import postgres_dump
from trading_maintenance.core.backups.archive import ArchiveError, list_local_backups
from trading_maintenance.core.backups.archive_reader import verify_archive
from trading_maintenance.core.backups.redis_records import snapshot_stats
from trading_maintenance.core.backups.restore import restore_backup
from trading_maintenance.core.backups.restore_parts import RestoreRefused
from trading_maintenance.core.backups.run import collect_trading_files, create_backup
from trading_maintenance.settings import SECRET_KEYS
from trading_maintenance_tests.backups.conftest import fill_database, fill_redis, fill_trading_data

KEY = "correct horse battery staple"


def _backup(tmp_path, data_dir, client, engine, db_url, secret=None, fmt="tar.zst", method="auto"):
    files, skipped, excluded = collect_trading_files(data_dir, ["parquet", "exports", "reports"], 30, datetime.now(timezone.utc))
    config = tmp_path / "maintenance.yml"
    config.write_text("redis:\n  url: redis://:hunter2pass@127.0.0.1:6379/0   # secret\nbackup:\n  format: tar.zst\n")
    outcome = create_backup(
        dest_dir=data_dir / "backups", fmt=fmt, secret=secret, parts=["config", "redis", "database", "trading_data"],
        config_path=config, effective_settings={"redis": {"url": "**********"}}, secret_keys=SECRET_KEYS,
        redis_client=client, engine=engine, db_url=db_url, data_dir=data_dir, trading_files=files, database_method=method,
    )
    return outcome, excluded, config


def _state(client, engine, data_dir):
    with engine.connect() as conn:
        tables = bdb.table_stats(conn)
    files = {p.relative_to(data_dir).as_posix(): p.read_bytes() for p in sorted(data_dir.rglob("*"))
             if p.is_file() and "backups" not in p.parts and "temp" not in p.parts}
    return snapshot_stats(client).as_dict(), tables, files


def _wipe(client, engine, data_dir):
    client.flushdb()
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA trading CASCADE"))
    for sub in ("parquet", "exports", "reports"):
        for p in sorted((data_dir / sub).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()


@pytest.mark.parametrize("secret,fmt,method", [(None, "tar.zst", "auto"), (KEY, "tar.gz", "auto"), (KEY, "tar.zst", "logical")])
def test_round_trip_restores_exactly_what_was_backed_up(tmp_path, data_dir, redis_client, pg_engine, pg_url, secret, fmt, method):
    fill_redis(redis_client)
    rows = fill_database(pg_engine)
    fill_trading_data(data_dir)
    before = _state(redis_client, pg_engine, data_dir)
    ttls_before = {k: redis_client.pttl(k) for k in (b"price_cache:AAPL", b"leaderboard", b"session:abc")}

    outcome, excluded, config = _backup(tmp_path, data_dir, redis_client, pg_engine, pg_url, secret, fmt, method)
    archive = Path(outcome.archive.path)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert archive.name.endswith(fmt + (".enc" if secret else ""))
    # "auto" takes pg_dump only when an installed pg_dump is at least the server's version
    # (pgserver's PostgreSQL 16 beside a system pg_dump 15 falls back to the logical export).
    expected = "logical" if method == "logical" else postgres_dump.choose_pg_method(bdb.server_version(pg_engine), "auto")[0]
    assert outcome.database["method"] == expected
    assert excluded == 1  # the 400-day-old daily file is in the monthly archive, not the backup
    assert outcome.redis["keys"] == 10
    assert {t: s["rows"] for t, s in outcome.database["tables"].items()} == rows
    manifest = verify_archive(archive, secret).manifest
    assert manifest["versions"]["redis"] == redis_client.info()["redis_version"]
    assert manifest["versions"]["postgresql"] == bdb.server_version(pg_engine)
    assert all(len(m["sha256"]) == 64 for m in manifest["members"])
    masked = [m for m in manifest["members"] if m["name"] == "config/maintenance.yml"]
    assert masked
    if secret is None:
        raw = archive.read_bytes()
        assert b"hunter2pass" not in raw

    _wipe(redis_client, pg_engine, data_dir)
    pg_engine.dispose()
    report = restore_backup(archive, secret, {"redis", "database", "trading_data"}, stage_root=data_dir / "temp",
                            redis_client=redis_client, engine=pg_engine, db_url=pg_url, data_dir=data_dir)
    assert report.problems == []
    after = _state(redis_client, pg_engine, data_dir)
    assert after[0] == before[0]  # every key, type and binary value
    assert after[1] == before[1]  # row counts and checksums of every table
    old_daily = [k for k in before[2] if k not in after[2]]
    assert len(old_daily) == 1 and after[2] == {k: v for k, v in before[2].items() if k not in old_daily}
    for key, ttl in ttls_before.items():
        assert 0 < redis_client.pttl(key) <= ttl
    assert redis_client.pttl("positions:AAPL") == -1
    assert redis_client.xlen("events:stream") == 1


def test_sqlite_round_trip_through_online_backup(tmp_path, data_dir, redis_client):
    from trading_maintenance.resources.database import TradingDatabaseResource

    db = TradingDatabaseResource(url="", data_dir=str(data_dir))
    engine = db.get_engine()
    rows = fill_database(engine)
    with engine.connect() as conn:
        before = bdb.table_stats(conn)
    outcome, _, _ = _backup(tmp_path, data_dir, redis_client, engine, "", None)
    assert outcome.database["method"] == "sqlite_backup_api"
    assert {t: s["rows"] for t, s in outcome.database["tables"].items()} == rows
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM trading.orders"))
    with pytest.raises(RestoreRefused):  # fills still has rows: not empty
        restore_backup(outcome.archive.path, None, {"database"}, stage_root=data_dir / "temp", engine=engine, data_dir=data_dir)
    report = restore_backup(outcome.archive.path, None, {"database"}, stage_root=data_dir / "temp", engine=engine,
                            data_dir=data_dir, force=True)
    assert report.problems == []
    with engine.connect() as conn:
        assert bdb.table_stats(conn) == before


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("secret", [None, KEY])
@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_damaged_archive_is_refused_and_nothing_changes(tmp_path, data_dir, redis_client, pg_engine, pg_url, secret, damage):
    fill_redis(redis_client)
    fill_database(pg_engine)
    fill_trading_data(data_dir)
    outcome, _, _ = _backup(tmp_path, data_dir, redis_client, pg_engine, pg_url, secret)
    archive = Path(outcome.archive.path)
    if damage == "tampered":
        _flip_byte(archive, archive.stat().st_size // 2)
    else:
        with open(archive, "r+b") as handle:
            handle.truncate(archive.stat().st_size - 200)
    redis_client.set("portfolio:cash_balance", "1")
    for p in (data_dir / "parquet").rglob("*.parquet"):
        p.write_bytes(b"changed since backup")
    before = _state(redis_client, pg_engine, data_dir)
    with pytest.raises(ArchiveError) as excinfo:
        restore_backup(archive, secret, {"redis", "database", "trading_data"}, stage_root=data_dir / "temp",
                       redis_client=redis_client, engine=pg_engine, db_url=pg_url, data_dir=data_dir, force=True)
    message = str(excinfo.value)
    assert any(word in message for word in ("altered", "truncated", "corrupt", "checksum")), message
    assert _state(redis_client, pg_engine, data_dir) == before
    assert not any((data_dir / "temp").iterdir())


def test_wrong_key_and_missing_key_are_refused(tmp_path, data_dir, redis_client, pg_engine, pg_url):
    fill_redis(redis_client)
    outcome, _, _ = _backup(tmp_path, data_dir, redis_client, pg_engine, pg_url, KEY)
    redis_client.flushdb()
    with pytest.raises(ArchiveError, match="wrong encryption key"):
        restore_backup(outcome.archive.path, "not the key", {"redis"}, stage_root=data_dir / "temp", redis_client=redis_client)
    with pytest.raises(ArchiveError, match="is encrypted"):
        restore_backup(outcome.archive.path, None, {"redis"}, stage_root=data_dir / "temp", redis_client=redis_client)
    assert redis_client.dbsize() == 0


def _forge_archive(path: Path, members: dict[str, bytes]) -> None:
    """A zstd tar with a valid-looking manifest listing the given (possibly malicious) members."""
    import hashlib
    import json

    import zstandard

    manifest = {"backup_id": "x", "members": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "kind": "trading_data"}
                                               for n, d in members.items()]}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [*members.items(), ("MANIFEST.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))


@pytest.mark.parametrize("member", ["data/../../escaped.txt", "/etc/escaped.txt", "data/parquet/../../../escaped.txt"])
def test_tar_slip_member_is_refused(tmp_path, data_dir, member):
    archive = data_dir / "backups" / "backup-20260101T000000Z.tar.zst"
    archive.parent.mkdir(parents=True)
    _forge_archive(archive, {"data/exports/ok.csv": b"fine", member: b"evil"})
    with pytest.raises(ArchiveError, match="tar slip"):
        restore_backup(archive, None, {"trading_data"}, stage_root=data_dir / "temp", data_dir=data_dir, force=True)
    assert not (tmp_path / "escaped.txt").exists() and not (data_dir / "exports" / "ok.csv").exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_symlink_member_is_refused(tmp_path, data_dir):
    archive = data_dir / "backups" / "backup-20260101T000000Z.tar.zst"
    archive.parent.mkdir(parents=True)
    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("data/exports/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    archive.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    with pytest.raises(ArchiveError, match="not a regular file"):
        restore_backup(archive, None, {"trading_data"}, stage_root=data_dir / "temp", data_dir=data_dir, force=True)


def test_existing_data_needs_force_and_dry_run_changes_nothing(tmp_path, data_dir, redis_client, pg_engine, pg_url):
    fill_redis(redis_client)
    fill_trading_data(data_dir)
    outcome, _, _ = _backup(tmp_path, data_dir, redis_client, pg_engine, pg_url)
    redis_client.set("portfolio:cash_balance", "999")
    redis_client.delete("active_tickers")
    with pytest.raises(RestoreRefused, match="already exist"):
        restore_backup(outcome.archive.path, None, {"redis"}, stage_root=data_dir / "temp", redis_client=redis_client)
    assert redis_client.get("portfolio:cash_balance") == b"999"
    report = restore_backup(outcome.archive.path, None, {"redis"}, stage_root=data_dir / "temp", redis_client=redis_client,
                            force=True, dry_run=True)
    assert report.plan["redis"]["create"] == 1 and report.plan["redis"]["replace"] == 9
    assert redis_client.get("portfolio:cash_balance") == b"999" and not redis_client.exists("active_tickers")
    restore_backup(outcome.archive.path, None, {"redis"}, stage_root=data_dir / "temp", redis_client=redis_client, force=True)
    assert redis_client.get("portfolio:cash_balance") == b"100000.50" and redis_client.scard("active_tickers") == 3
    assert len(list_local_backups(data_dir / "backups")) == 1
