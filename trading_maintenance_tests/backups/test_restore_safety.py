"""Hostile and unlucky restores: crafted archives with CORRECT checksums, members outside their
folders, oversized members, a failure part-way through `--type all`."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import zstandard
from sqlalchemy import create_engine, text

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.backups import postgres_dump
from trading_maintenance.core.backups.archive import ArchiveError
from trading_maintenance.core.backups.archive_reader import copy_bounded, verify_archive
from trading_maintenance.core.backups.archive_writer import ArchiveWriter
from trading_maintenance.core.backups.restore import RestoreFailed, restore_backup
from trading_maintenance.core.backups.restore_parts import RestoreRefused
from trading_maintenance.core.backups.run import create_backup
from trading_maintenance.resources.database import TradingDatabaseResource
from trading_maintenance.settings import SECRET_KEYS
from trading_maintenance_tests.backups.conftest import fill_database, fill_redis, fill_trading_data


def _rewrite(archive: Path, dest: Path, stage: Path, edit) -> Path:
    """A copy of `archive` whose members `edit(name, bytes)` may change or drop (None), written by
    the project's own writer, so every checksum in the new manifest is correct."""
    verified = verify_archive(archive, None, stage)
    manifest = {k: v for k, v in verified.manifest.items() if k not in ("members", "backup_id", "format", "encrypted")}
    with ArchiveWriter(dest, verified.manifest["backup_id"], "tar.zst") as writer:
        for entry in verified.manifest["members"]:
            data = edit(entry["name"], verified.staged[entry["name"]].read_bytes())
            if data is not None:
                writer.add_bytes(entry["name"], data, entry["kind"])
        return Path(writer.finish(manifest).path)


def _logical_backup(tmp_path, data_dir, pg_engine, pg_url) -> Path:
    fill_database(pg_engine)
    outcome = create_backup(dest_dir=tmp_path / "orig", fmt="tar.zst", secret=None, parts=["database"], config_path=None,
                            effective_settings={}, secret_keys=set(), engine=pg_engine, db_url=pg_url, data_dir=data_dir,
                            database_method="logical")
    return Path(outcome.archive.path)


def _edit_schema(change):
    def edit(name, data):
        if name != "database/logical/schema.json":
            return data
        spec = json.loads(data)
        change(spec["tables"][0])
        return json.dumps(spec).encode()
    return edit


@pytest.mark.parametrize("change,field", [
    (lambda t: t["columns"][0].update(type="INTEGER); DROP TABLE public.victim; CREATE TABLE trading.x (a INT"), ".type"),
    (lambda t: t["columns"][0].update(type="INTEGER DEFAULT (pg_read_file('/etc/passwd'))::int"), ".type"),
    (lambda t: t.update(name='daily_performance" CASCADE; DROP TABLE public.victim; --'), ".name"),
    (lambda t: t["indexes"].append({"name": "ix\"; DROP TABLE public.victim; --", "columns": ["date"], "unique": False}), ".name"),
    (lambda t: t.update(name="../../../../etc/hostname"), ".name"),
])
def test_crafted_logical_dump_is_refused_before_any_sql(tmp_path, data_dir, pg_engine, pg_url, change, field):
    archive = _logical_backup(tmp_path, data_dir, pg_engine, pg_url)
    crafted = _rewrite(archive, tmp_path / "crafted", tmp_path / "s1", _edit_schema(change))
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE TABLE public.victim (id int)"))
        conn.execute(text("DROP SCHEMA trading CASCADE"))
    with pytest.raises(RestoreRefused) as excinfo:
        restore_backup(crafted, None, {"database"}, stage_root=data_dir / "temp", engine=pg_engine, db_url=pg_url,
                       data_dir=data_dir, force=True)
    assert "database: schema.json tables[" in str(excinfo.value) and field in str(excinfo.value)
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.victim')")).scalar() == "victim"
        assert conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = 'trading'")).scalar() == 0


def test_logical_restore_never_drops_objects_outside_its_schema(tmp_path, data_dir, pg_engine, pg_url):
    """A view elsewhere depending on a trading table makes the restore fail, not vanish (no CASCADE)."""
    archive = _logical_backup(tmp_path, data_dir, pg_engine, pg_url)
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE VIEW public.order_report AS SELECT id FROM trading.orders"))
    with pytest.raises(RestoreFailed) as excinfo:
        restore_backup(archive, None, {"database"}, stage_root=data_dir / "temp", engine=pg_engine, db_url=pg_url,
                       data_dir=data_dir, force=True)
    assert excinfo.value.report.state["database"].startswith("as before the restore")
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM public.order_report")).scalar() == 25


def _sqlite_engine(data_dir):
    return TradingDatabaseResource(url="", data_dir=str(data_dir)).get_engine()


@pytest.mark.parametrize("craft", [
    "CREATE TRIGGER steal AFTER INSERT ON orders BEGIN DELETE FROM fills; END",
    "CREATE VIEW leak AS SELECT * FROM orders",
    'CREATE TABLE "evil""name" (a INTEGER)',
    "CREATE TABLE odd (a INTEGER, b SOMETHING_ELSE)",
])
def test_crafted_sqlite_snapshot_is_refused(tmp_path, data_dir, craft):
    engine = _sqlite_engine(data_dir)
    fill_database(engine)
    outcome = create_backup(dest_dir=tmp_path / "orig", fmt="tar.zst", secret=None, parts=["database"], config_path=None,
                            effective_settings={}, secret_keys=set(), engine=engine, data_dir=data_dir)

    def edit(name, data):
        if name != "database/trading.sqlite":
            return data
        path = tmp_path / "crafted.sqlite"
        path.write_bytes(data)
        conn = sqlite3.connect(path)
        conn.execute(craft)
        conn.commit()
        conn.close()
        return path.read_bytes()

    crafted = _rewrite(Path(outcome.archive.path), tmp_path / "crafted", tmp_path / "s1", edit)
    target = data_dir / "db" / "trading.db"
    before = target.read_bytes()
    with pytest.raises(RestoreRefused, match="database: .*(trigger|view|identifier|type)"):
        restore_backup(crafted, None, {"database"}, stage_root=data_dir / "temp", engine=engine, data_dir=data_dir, force=True)
    assert target.read_bytes() == before


@pytest.mark.parametrize("member", [
    "data/.env",
    "data/backups/backup-20991231T000000Z.tar.zst",
    "data/logs/trading.log",
    "data/parquet/.hidden/x.parquet",
    "data/temp/x.bin",
    "data/exports",
])
def test_trading_data_accepts_only_members_under_its_folders(tmp_path, data_dir, member):
    with ArchiveWriter(tmp_path / "b", "20261101T000000Z", "tar.zst") as writer:
        writer.add_bytes("data/exports/ok.csv", b"fine", "trading_data")
        writer.add_bytes(member, b"planted", "trading_data")
        archive = writer.finish({"created_at": "2026-11-01T00:00:00+00:00"}).path
    with pytest.raises(ArchiveError, match="refused"):
        restore_backup(archive, None, {"trading_data"}, stage_root=data_dir / "temp", data_dir=data_dir, force=True)
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


def test_member_kind_must_match_its_folder(tmp_path, data_dir):
    with ArchiveWriter(tmp_path / "b", "20261101T000000Z", "tar.zst") as writer:
        writer.add_bytes("data/exports/ok.csv", b"fine", "config")
        archive = writer.finish({"created_at": "2026-11-01T00:00:00+00:00"}).path
    with pytest.raises(ArchiveError, match="listed as 'config'"):
        restore_backup(archive, None, {"trading_data"}, stage_root=data_dir / "temp", data_dir=data_dir, force=True)
    assert not (data_dir / "exports").exists()


def _bomb(path: Path, declared: bytes, real_size: int) -> None:
    """A member far bigger than the manifest says (the manifest's checksum is of `declared`)."""
    import hashlib

    manifest = {"backup_id": "20261101T000000Z", "created_at": "2026-11-01T00:00:00+00:00", "members": [
        {"name": "data/exports/big.csv", "size": len(declared), "sha256": hashlib.sha256(declared).hexdigest(), "kind": "trading_data"}]}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/exports/big.csv")
        info.size = real_size
        tar.addfile(info, io.BytesIO(bytes(real_size)))
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(raw.getvalue()))


def test_oversized_member_writes_nothing_even_under_a_file_size_limit(tmp_path, data_dir):
    """64 MiB of zeros (a few KB compressed) declared as 10 bytes: refused before any byte is staged.
    The restore runs with RLIMIT_FSIZE at 1 MiB, so staging the member would kill it."""
    archive = tmp_path / "backup-20261101T000000Z.tar.zst"
    _bomb(archive, b"0123456789", 64 << 20)
    assert archive.stat().st_size < 200_000
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        from trading_maintenance.core.backups.archive import ArchiveError
        from trading_maintenance.core.backups.restore import restore_backup
        try:
            restore_backup({str(archive)!r}, None, {{"trading_data"}}, stage_root=Path({str(data_dir / "temp")!r}),
                           data_dir=Path({str(data_dir)!r}), force=True)
        except ArchiveError as exc:
            print(exc)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert "checksum mismatch" in proc.stdout
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


def test_staging_checks_free_space_and_stops_at_the_declared_size(tmp_path, data_dir):
    with ArchiveWriter(tmp_path / "b", "20261101T000000Z", "tar.zst") as writer:
        writer.add_bytes("data/exports/a.csv", b"x" * 5000, "trading_data")
        archive = writer.finish({"created_at": "2026-11-01T00:00:00+00:00"}).path
    with pytest.raises(ArchiveError, match="free"):
        restore_backup(archive, None, {"trading_data"}, stage_root=data_dir / "temp", data_dir=data_dir, min_free_bytes=1 << 62)
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []
    out = io.BytesIO()
    with pytest.raises(ArchiveError, match="larger than the 100 bytes"):
        copy_bounded(io.BytesIO(b"y" * 10_000), out, 100, "member")
    assert len(out.getvalue()) <= 100


def test_restore_all_puts_back_what_it_changed_when_a_later_part_fails(tmp_path, data_dir, redis_client, pg_engine, pg_url):
    """The database is restored first; Redis then fails part-way (a stream's DUMP payload the server
    rejects, checksums of the archive all correct): the keys already written and the database come
    back from the safety copy, and the report says the state of every part."""
    fill_redis(redis_client)
    fill_database(pg_engine)
    fill_trading_data(data_dir)
    config = tmp_path / "maintenance.yml"
    config.write_text("backup:\n  format: tar.zst\n")
    outcome = create_backup(dest_dir=tmp_path / "orig", fmt="tar.zst", secret=None,
                            parts=["config", "redis", "database", "trading_data"], config_path=config, effective_settings={},
                            secret_keys=SECRET_KEYS, redis_client=redis_client, engine=pg_engine, db_url=pg_url,
                            data_dir=data_dir, trading_files=None)

    def corrupt_stream(name, data):
        if name != "redis/keys.jsonl":
            return data
        lines = []
        for line in data.decode().splitlines():
            record = json.loads(line)
            if record["t"] == "stream":
                payload = bytearray(base64.b64decode(record["v"]["dump"]))
                payload[len(payload) // 2] ^= 0xFF
                record["v"]["dump"] = base64.b64encode(bytes(payload)).decode()
            lines.append(json.dumps(record))
        return ("\n".join(lines) + "\n").encode()

    crafted = _rewrite(Path(outcome.archive.path), data_dir / "backups", tmp_path / "s1", corrupt_stream)
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM trading.fills WHERE id > 5"))
        conn.execute(text("UPDATE trading.orders SET status = 'changed'"))
    with pg_engine.connect() as conn:
        db_before = bdb.table_stats(conn)
    redis_client.set("portfolio:cash_balance", "1")
    redis_client.delete("active_tickers")
    redis_client.delete("events:stream")
    config.write_text("backup:\n  format: tar.gz\n")
    with pytest.raises(RestoreFailed) as excinfo:
        restore_backup(crafted, None, {"config", "redis", "database", "trading_data"}, stage_root=data_dir / "temp",
                       config_path=config, redis_client=redis_client, engine=pg_engine, db_url=pg_url, data_dir=data_dir,
                       force=True)
    state = excinfo.value.report.state
    assert state["database"].startswith("as before the restore") and state["redis"].startswith("as before the restore")
    assert state["config"] == state["trading_data"] == "unchanged (not reached)"
    assert "restore failed at redis" in str(excinfo.value)
    pg_engine.dispose()
    with pg_engine.connect() as conn:
        assert bdb.table_stats(conn) == db_before
    assert redis_client.get("portfolio:cash_balance") == b"1"
    assert not redis_client.exists("active_tickers") and not redis_client.exists("events:stream")
    assert redis_client.hget("positions:AAPL", "side") == b"long" and redis_client.pttl("positions:AAPL") == -1
    assert config.read_text() == "backup:\n  format: tar.gz\n"
    assert not [p for p in (data_dir / "temp").iterdir()]


def test_pg_dump_with_objects_outside_trading_is_refused(tmp_path, data_dir, pg_engine, pg_url):
    if postgres_dump.choose_pg_method(bdb.server_version(pg_engine))[0] != "pg_dump":
        pytest.skip("no pg_dump for this server version")
    fill_database(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE FUNCTION trading.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'"))
    outcome = create_backup(dest_dir=tmp_path / "orig", fmt="tar.zst", secret=None, parts=["database"], config_path=None,
                            effective_settings={}, secret_keys=set(), engine=pg_engine, db_url=pg_url, data_dir=data_dir)
    with pytest.raises(RestoreRefused, match="FUNCTION"):
        restore_backup(outcome.archive.path, None, {"database"}, stage_root=data_dir / "temp", engine=pg_engine, db_url=pg_url,
                       data_dir=data_dir, force=True, dry_run=True)
    other = create_engine(pg_url)
    with other.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.orders")).scalar() == 25
    other.dispose()
