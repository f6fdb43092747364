"""The restore drill: restore a backup into scratch targets and compare with its manifest."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.backups import database_logical, postgres_dump
from trading_maintenance.core.backups.archive import ArchiveError
from trading_maintenance.core.backups.archive_reader import sha256_file, verify_archive
from trading_maintenance.core.backups.redis_records import compare_ttls, restore_redis, snapshot_stats
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.restore import member_type
from trading_maintenance.core.backups.restore_parts import RestoreRefused
from trading_maintenance.core.backups.snapshots import stage_snapshot
from trading_maintenance.core.backups.temporaries import owned_temp_dir, remove_dead_temporaries, remove_legacy_stage_dirs
from trading_maintenance.core.database.session_options import (
    DEFAULT_LOCK_TIMEOUT_MS,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    postgres_session_options,
)

DRILL_PREFIX = "restore-drill-"
DRILL_MARKER = "maintenance:drill:scratch"


# --------------------------------------------------------------------------- the drill


@dataclass
class DrillReport:
    backup_id: str
    archive: str
    passed: bool = True
    checks: list[dict] = field(default_factory=list)  # {part, passed, detail}
    seconds: float = 0.0

    def add(self, part: str, passed: bool, detail: str) -> None:
        self.checks.append({"part": part, "passed": passed, "detail": detail})
        self.passed = self.passed and passed

    def as_dict(self) -> dict:
        return {"backup_id": self.backup_id, "archive": self.archive, "passed": self.passed, "checks": self.checks,
                "seconds": round(self.seconds, 3)}


def prepare_scratch_redis(client) -> None:
    """Only an empty database or one this drill marked before may be flushed."""
    if client.dbsize() and not client.exists(DRILL_MARKER):
        raise RestoreRefused(
            "the spare Redis database for the drill is not empty and not marked as a drill scratch: refusing to flush it "
            "(point backup.drill_redis_url at an unused database, or leave it empty for an embedded one)"
        )
    client.flushdb()


def run_drill(
    archive_path: str | Path,
    secret: str | None,
    *,
    work_root: Path,
    scratch_redis=None,
    pg_admin_url: str | None = None,
    repository: Repository | None = None,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
) -> DrillReport:
    """Restore everything into scratch targets and compare with what the manifest recorded; with
    `repository`, archive_path is the id of the snapshot to restore."""
    started = time.monotonic()
    report = DrillReport("", str(archive_path))
    remove_dead_temporaries(work_root, (DRILL_PREFIX,))
    remove_legacy_stage_dirs(work_root)
    with owned_temp_dir(work_root, DRILL_PREFIX) as stage:
        try:
            if repository is None:
                verified = verify_archive(archive_path, secret, stage, accept=lambda name: member_type(name, None))
            else:
                with repository.lock(exclusive=False):
                    verified = stage_snapshot(repository, str(archive_path), stage, accept=lambda name: member_type(name, None))
        except ArchiveError as exc:
            report.add("archive", False, str(exc))
            return report
        manifest = verified.manifest
        report.backup_id = manifest.get("backup_id", "")
        report.add("archive", True, f"{len(manifest['members'])} members, every checksum verified")

        if "config/effective_settings.json" in verified.staged:
            try:
                json.loads(verified.staged["config/effective_settings.json"].read_text())
                import yaml

                if "config/maintenance.yml" in verified.staged:
                    yaml.safe_load(verified.staged["config/maintenance.yml"].read_text())
                report.add("config", True, "configuration parses")
            except Exception as exc:  # noqa: BLE001
                report.add("config", False, f"configuration does not parse: {type(exc).__name__}")

        expected_redis = manifest.get("redis") or {}
        if "redis/keys.jsonl" in verified.staged:
            if scratch_redis is None:
                report.add("redis", False, "no spare Redis database available for the drill")
            else:
                try:
                    prepare_scratch_redis(scratch_redis)
                    restore_redis(scratch_redis, verified.staged["redis/keys.jsonl"])
                    got = snapshot_stats(scratch_redis)
                    ttl_problems = compare_ttls(scratch_redis, verified.staged["redis/keys.jsonl"])
                    ok = got.keys == expected_redis.get("keys") and got.digest == expected_redis.get("digest") and not ttl_problems
                    detail = (
                        f"{got.keys} keys restored (backup {expected_redis.get('keys')}), "
                        f"values {'match' if got.digest == expected_redis.get('digest') else 'DIFFER'}"
                    )
                    if ttl_problems:
                        detail += f"; TTL problems: {ttl_problems[:3]}"
                    report.add("redis", ok, detail)
                except Exception as exc:  # noqa: BLE001 - the drill reports, it does not crash
                    report.add("redis", False, f"{type(exc).__name__}: {str(exc)[:300]}")
                finally:
                    try:
                        scratch_redis.flushdb()
                        scratch_redis.set(DRILL_MARKER, "1")
                    except Exception:  # noqa: BLE001
                        pass

        db_manifest = manifest.get("database") or {}
        if db_manifest:
            try:
                got = _drill_database(verified, db_manifest, pg_admin_url, stage, lock_timeout_ms, statement_timeout_ms)
                expected = db_manifest.get("tables", {})
                diffs = [t for t in expected if got.get(t) != expected[t]]
                rows = sum(s["rows"] for s in got.values())
                report.add("database", not diffs, f"{len(got)} tables, {rows} rows restored ({db_manifest.get('method')})"
                           + (f"; differ: {diffs}" if diffs else "; row counts and checksums match"))
            except Exception as exc:  # noqa: BLE001
                report.add("database", False, f"{type(exc).__name__}: {str(exc)[:500]}")

        data_members = verified.members("trading_data")
        if data_members:
            bad = [m["name"] for m in data_members if sha256_file(verified.staged[m["name"]]) != m["sha256"]]
            report.add("trading_data", not bad, f"{len(data_members)} files restored to a temporary folder, checksums "
                       + ("match" if not bad else f"differ: {bad[:5]}"))
        report.seconds = time.monotonic() - started
        return report


def _drill_database(verified, db_manifest: dict, pg_admin_url: str | None, stage: Path,
                    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
                    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS) -> dict:
    method = db_manifest.get("method")
    if method == "sqlite_backup_api":
        target = stage / "drill-trading.db"
        bdb.restore_sqlite_file(verified.staged["database/trading.sqlite"], target)
        return bdb.sqlite_table_stats(target)
    if not pg_admin_url:
        raise RestoreRefused("a PostgreSQL backup needs the PostgreSQL server to create a scratch database")
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"tm_restore_drill_{uuid.uuid4().hex[:10]}"
    # The scratch database is the drill's own, but CREATE/DROP DATABASE and the restore still wait on
    # server-wide locks: bounded like every other session, so a drill never hangs.
    bounded = {"connect_timeout": 5, "options": postgres_session_options(lock_timeout_ms, statement_timeout_ms)}
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT", connect_args=bounded)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url, connect_args=bounded)
        try:
            if method == "pg_dump":
                postgres_dump.restore_pg_dump(url, verified.staged["database/trading.pgdump"], schema_exists=False,
                                              lock_timeout_ms=lock_timeout_ms)
            else:
                database_logical.restore_logical(engine, verified.staged["database/logical/schema.json"].parent)
            with engine.connect() as conn:
                return bdb.table_stats(conn)
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def manifest_of(path: str | Path, secret: str | None) -> dict:
    """The verified manifest of an archive (reads and checks the whole archive)."""
    return verify_archive(path, secret).manifest
