"""Restore from a backup archive, and the restore drill that proves a backup.

Order of work, always: verify the manifest and every checksum while staging the needed members in
a private folder (nothing else touched), plan each part against its target, refuse on conflicts
unless forced, then (unless a dry run) apply and verify what was restored.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from trading_maintenance.core import backup_database as bdb
from trading_maintenance.core.backup import MANIFEST_NAME, ArchiveError, sha256_file, unmask_config_text, verify_archive
from trading_maintenance.core.backup_redis import compare_ttls, plan_redis_restore, restore_redis, snapshot_stats
from trading_maintenance.core.atomic import atomic_copy

TYPES = ("config", "redis", "trading_data", "database")
PREFIX = {"config": "config/", "redis": "redis/", "database": "database/", "trading_data": "data/"}
DRILL_MARKER = "maintenance:drill:scratch"


class RestoreRefused(ArchiveError):
    """The restore would overwrite data and was not forced (or the target is unsafe)."""


def _kinds_wanted(types: set[str]):
    prefixes = tuple(PREFIX[t] for t in types)
    return lambda name: name.startswith(prefixes)


@dataclass
class RestoreReport:
    backup: str
    backup_id: str
    dry_run: bool
    plan: dict = field(default_factory=dict)  # type -> what would change
    restored: dict = field(default_factory=dict)  # type -> what changed
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"backup": self.backup, "backup_id": self.backup_id, "dry_run": self.dry_run, "plan": self.plan,
                "restored": self.restored, "problems": self.problems}


def _safe_target(root: Path, member: str) -> Path:
    rel = member[len("data/"):]
    target = (root / rel).resolve()
    if not str(target).startswith(str(root.resolve()) + os.sep):
        raise ArchiveError(f"member {member!r} would land outside {root}: refused (tar slip)")
    return target


def restore_backup(
    archive_path: str | Path,
    secret: str | None,
    types: set[str],
    *,
    stage_root: Path,
    config_path: Path | None = None,
    redis_client=None,
    engine=None,
    db_url: str = "",
    data_dir: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> RestoreReport:
    unknown = set(types) - set(TYPES)
    if unknown:
        raise ValueError(f"unknown restore type(s) {sorted(unknown)}; expected {TYPES}")
    stage_root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix="restore-", dir=stage_root))
    os.chmod(stage, 0o700)
    try:
        verified = verify_archive(archive_path, secret, stage, _kinds_wanted(types))
        manifest = verified.manifest
        report = RestoreReport(str(archive_path), manifest.get("backup_id", ""), dry_run)
        conflicts: list[str] = []
        actions: dict = {}

        if "config" in types:
            staged = verified.staged.get("config/maintenance.yml")
            if staged is None or config_path is None:
                report.plan["config"] = {"action": "none", "reason": "no configuration file in this backup"}
            else:
                current = config_path.read_text() if config_path.exists() else ""
                new_text = unmask_config_text(staged.read_text(), current)
                action = "unchanged" if new_text == current else ("replace" if current else "create")
                report.plan["config"] = {"action": action, "target": str(config_path)}
                if action == "replace" and not force:
                    conflicts.append(f"config: {config_path} differs from the backup")
                actions["config"] = new_text

        if "redis" in types:
            staged = verified.staged.get("redis/keys.jsonl")
            if staged is None or redis_client is None:
                report.plan["redis"] = {"action": "none", "reason": "no Redis export in this backup"}
            else:
                plan = plan_redis_restore(redis_client, staged)
                report.plan["redis"] = plan.as_dict()
                if plan.replace and not force:
                    conflicts.append(f"redis: {plan.replace} keys already exist in the target (e.g. {plan.existing_sample[:3]})")

        if "database" in types:
            db_members = [m for m in verified.staged if m.startswith("database/")]
            if not db_members or engine is None:
                report.plan["database"] = {"action": "none", "reason": "no database dump in this backup"}
            else:
                method = manifest.get("database", {}).get("method")
                dialect = manifest.get("database", {}).get("dialect")
                if dialect != engine.dialect.name:
                    raise RestoreRefused(f"database: the backup holds a {dialect} dump; the target is {engine.dialect.name}")
                counts = bdb.target_row_counts(engine)
                non_empty = {t: n for t, n in counts.items() if n}
                report.plan["database"] = {"method": method, "target_rows": counts,
                                           "rows": {t: s["rows"] for t, s in manifest["database"].get("tables", {}).items()}}
                if non_empty and not force:
                    conflicts.append(f"database: target is not empty ({non_empty}); use --force to replace it")

        if "trading_data" in types:
            root = Path(data_dir)
            files = {"create": 0, "replace": 0, "unchanged": 0}
            targets = {}
            for member in [m["name"] for m in verified.members("trading_data")]:
                target = _safe_target(root, member)
                entry = next(m for m in manifest["members"] if m["name"] == member)
                if target.exists():
                    if target.stat().st_size == entry["size"] and sha256_file(target) == entry["sha256"]:
                        files["unchanged"] += 1
                        continue
                    files["replace"] += 1
                    if not force and files["replace"] <= 5:
                        conflicts.append(f"trading_data: {target} differs from the backup")
                else:
                    files["create"] += 1
                targets[member] = target
            report.plan["trading_data"] = files
            actions["trading_data"] = targets
            if files["replace"] > 5 and not force:
                conflicts.append(f"trading_data: {files['replace']} files in all differ from the backup")

        if conflicts:
            raise RestoreRefused("restore refused, nothing was changed:\n  " + "\n  ".join(conflicts) + "\nre-run with --force to overwrite")
        if dry_run:
            return report

        if "config" in actions and report.plan["config"]["action"] != "unchanged":
            config_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = config_path.with_name(f".{config_path.name}.restore.tmp")
            tmp.write_text(actions["config"])
            os.chmod(tmp, 0o600)
            os.replace(tmp, config_path)
            report.restored["config"] = {"path": str(config_path)}
        if "redis" in report.plan and "create" in report.plan["redis"]:
            staged = verified.staged["redis/keys.jsonl"]
            written = restore_redis(redis_client, staged)
            ttl_problems = compare_ttls(redis_client, staged)
            report.problems += [f"redis: {p}" for p in ttl_problems]
            report.restored["redis"] = {"keys": written}
        if "database" in report.plan and "method" in report.plan["database"]:
            report.restored["database"] = _restore_database(verified, engine, db_url, data_dir, manifest)
            expected = manifest["database"].get("tables", {})
            with engine.connect() as conn:
                after = bdb.table_stats(conn) if engine.dialect.name == "postgresql" else None
            if after is None:
                after = bdb.sqlite_table_stats(_sqlite_target(db_url, data_dir))
            for table, stats in expected.items():
                if after.get(table) != stats:
                    report.problems.append(f"database: {table} after restore {after.get(table)} != backup {stats}")
        if actions.get("trading_data"):
            restored = 0
            for member, target in actions["trading_data"].items():
                atomic_copy(verified.staged[member], target)
                entry = next(m for m in manifest["members"] if m["name"] == member)
                if sha256_file(target) != entry["sha256"]:
                    report.problems.append(f"trading_data: {target} does not match the backup after restore")
                restored += 1
            report.restored["trading_data"] = {"files": restored}
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _sqlite_target(db_url: str, data_dir: Path | None) -> Path:
    from trading_maintenance.core.backup_run import sqlite_file_for

    return sqlite_file_for(db_url, data_dir)


def _restore_database(verified, engine, db_url: str, data_dir, manifest: dict) -> dict:
    method = manifest["database"]["method"]
    if method == "sqlite_backup_api":
        target = _sqlite_target(db_url, data_dir)
        engine.dispose()
        bdb.restore_sqlite_file(verified.staged["database/trading.sqlite"], target)
        engine.dispose()
        return {"method": method, "target": str(target)}
    if method == "pg_dump":
        engine.dispose()
        exists = bool(bdb.target_row_counts(engine)) or _schema_exists(engine)
        bdb.restore_pg_dump(db_url, verified.staged["database/trading.pgdump"], schema_exists=exists)
        return {"method": method}
    logical_dir = verified.staged["database/logical/schema.json"].parent
    return {"method": method, "rows": bdb.restore_logical(engine, logical_dir)}


def _schema_exists(engine) -> bool:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        return bdb.SCHEMA in inspect(conn).get_schema_names()


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
) -> DrillReport:
    """Restore everything into scratch targets and compare with what the manifest recorded."""
    started = time.monotonic()
    work_root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix="drill-", dir=work_root))
    os.chmod(stage, 0o700)
    report = DrillReport("", str(archive_path))
    try:
        try:
            verified = verify_archive(archive_path, secret, stage)
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
                    detail = f"{got.keys} keys restored (backup {expected_redis.get('keys')}), values {'match' if got.digest == expected_redis.get('digest') else 'DIFFER'}"
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
                got = _drill_database(verified, db_manifest, pg_admin_url, stage)
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
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        report.seconds = time.monotonic() - started


def _drill_database(verified, db_manifest: dict, pg_admin_url: str | None, stage: Path) -> dict:
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
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url)
        try:
            if method == "pg_dump":
                bdb.restore_pg_dump(url, verified.staged["database/trading.pgdump"], schema_exists=False)
            else:
                bdb.restore_logical(engine, verified.staged["database/logical/schema.json"].parent)
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


__all__ = ["MANIFEST_NAME", "RestoreRefused", "RestoreReport", "DrillReport", "restore_backup", "run_drill", "TYPES"]
