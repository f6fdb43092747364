"""Restore from a backup archive, and the restore drill that proves a backup.

Order of work, always: verify the manifest and every checksum (writing nothing), refuse any member
outside the layout of the requested types, stage the needed members in a private folder, check
every part can be restored (tools, versions, content, free space) and plan it against its target,
refuse on conflicts unless forced; then (unless a dry run) take a safety copy of everything that
will change, apply part by part and verify. A failure part-way puts back what was already changed
from the safety copy and the report says exactly what state each part is in.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.common.atomic import atomic_copy, atomic_write_bytes, atomic_write_text
from trading_maintenance.core.backups.archive import (
    MANIFEST_NAME,
    MIN_FREE_BYTES,
    ArchiveError,
    is_temporary_name,
    owned_temp_dir,
    parse_archive_name,
    remove_dead_temporaries,
    same_config,
    sha256_file,
    unmask_config_text,
    verify_archive,
)
from trading_maintenance.core.backups.redis_snapshot import CORE_TYPES, compare_ttls, plan_redis_restore, read_records, restore_redis, snapshot_stats

TYPES = ("config", "redis", "trading_data", "database")
APPLY_ORDER = ("database", "redis", "config", "trading_data")  # the part most likely to fail goes first
STAGE_PREFIX = "restore-stage-"
DRILL_PREFIX = "restore-drill-"
SAFETY_PREFIX = "restore-safety-"
DRILL_MARKER = "maintenance:drill:scratch"
CONFIG_MEMBERS = ("config/maintenance.yml", "config/effective_settings.json")
DATABASE_MEMBERS = ("database/trading.sqlite", "database/trading.pgdump", "database/logical/schema.json")
LOGICAL_TABLE_MEMBER = re.compile(r"^database/logical/[A-Za-z_][A-Za-z0-9_]{0,62}\.jsonl$")
REDIS_MEMBER = re.compile(r"^redis/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Folders of the data root a restore never writes, whatever the configuration says.
NEVER_RESTORED = ("backups", "temp")
DEFAULT_DATA_FOLDERS = ("parquet", "exports", "reports")


class RestoreRefused(ArchiveError):
    """The restore would overwrite data and was not forced (or the target is unsafe)."""


class RestoreFailed(RuntimeError):
    """A restore failed part-way; `report.state` says what each part looks like now."""

    def __init__(self, message: str, report: "RestoreReport"):
        super().__init__(message)
        self.report = report


def member_type(name: str, data_folders: tuple[str, ...] | None) -> str:
    """The restore type a member belongs to; ArchiveError for anything outside the backup layout.

    data_folders (the configured trading data folders) narrows `data/` members to those folders;
    None checks only that a data member has no hidden or protected part.
    """
    if name in CONFIG_MEMBERS:
        return "config"
    if REDIS_MEMBER.match(name):
        return "redis"
    if name in DATABASE_MEMBERS or LOGICAL_TABLE_MEMBER.match(name):
        return "database"
    if name.startswith("data/"):
        parts = name.split("/")[1:]
        if len(parts) < 2 or any(part.startswith(".") or is_temporary_name(part) for part in parts) or parts[0] in NEVER_RESTORED:
            raise ArchiveError(f"member {name!r} is not trading data (hidden, temporary or protected path): refused")
        if data_folders is not None:
            rel = "/".join(parts)
            if not any(rel.startswith(folder.strip("/") + "/") for folder in data_folders if folder.strip("/")):
                raise ArchiveError(f"member {name!r} is outside the trading data folders {list(data_folders)}: refused")
        return "trading_data"
    raise ArchiveError(f"member {name!r} belongs to no restore type (config/, redis/, database/, data/): refused")


@dataclass
class RestoreReport:
    backup: str
    backup_id: str
    dry_run: bool
    plan: dict = field(default_factory=dict)  # type -> what would change
    restored: dict = field(default_factory=dict)  # type -> what changed
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)  # type -> its state after this restore

    def as_dict(self) -> dict:
        return {"backup": self.backup, "backup_id": self.backup_id, "dry_run": self.dry_run, "plan": self.plan,
                "restored": self.restored, "problems": self.problems, "warnings": self.warnings, "state": self.state}


def describe_plan(part: str, plan: dict) -> str:
    """One line a person reads: what restoring this part would do."""
    action = plan.get("action")
    if action == "none":
        return f"nothing to restore ({plan.get('reason', 'not in this backup')})"
    if action == "unchanged":
        return f"no change: {plan.get('target', 'the target')} already matches the backup"
    if part == "config":
        return f"would {'replace' if action == 'replace' else 'create'} {plan['target']}"
    if part == "redis":
        return f"would write {plan['create'] + plan['replace']} keys: {plan['create']} new, {plan['replace']} replacing existing keys"
    if part == "database":
        rows = sum(plan.get("rows", {}).values())
        existing = sum(plan.get("target_rows", {}).values())
        return (f"would recreate {len(plan.get('rows', {}))} tables with {rows} rows ({plan.get('method')}), "
                f"replacing {existing} rows now in the target")
    if part == "trading_data":
        return (f"would create {plan['create']} files and replace {plan['replace']} "
                f"({plan['unchanged']} already match the backup, {plan['bytes']} bytes to write)")
    return json.dumps(plan, default=str)


# --------------------------------------------------------------------------- parts


class _Part:
    """One restore type: plan (validating everything, changing nothing), save, apply, verify, undo."""

    name = ""
    changes = False

    def conflict(self, force: bool) -> str | None:
        return None

    def save(self, safety: Path) -> None:
        pass

    def apply(self) -> dict:
        return {}

    def undo(self) -> None:
        pass


class _ConfigPart(_Part):
    name = "config"

    def __init__(self, staged: Path | None, config_path: Path | None):
        self.path = config_path
        self.plan = {"action": "none", "reason": "no configuration file in this backup"}
        if staged is None or config_path is None:
            return
        self.current = config_path.read_bytes() if config_path.exists() else None
        current_text = self.current.decode("utf-8", "replace") if self.current is not None else ""
        try:
            self.new_text = unmask_config_text(staged.read_text(), current_text)
        except ArchiveError as exc:
            raise RestoreRefused(f"config: {exc}") from None
        if self.current is not None and same_config(self.new_text, current_text):
            self.plan = {"action": "unchanged", "target": str(config_path)}
        else:
            self.plan = {"action": "replace" if self.current is not None else "create", "target": str(config_path)}
            self.changes = True

    def conflict(self, force: bool) -> str | None:
        return f"config: {self.path} differs from the backup" if self.plan["action"] == "replace" and not force else None

    def apply(self) -> dict:
        atomic_write_text(self.path, self.new_text, 0o600)
        if not same_config(self.path.read_text(), self.new_text):
            raise RestoreRefused(f"config: {self.path} does not hold the restored settings after writing")
        return {"path": str(self.path)}

    def undo(self) -> None:
        if self.current is None:
            self.path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(self.path, self.current, 0o600)


def _redis_major(version: str) -> int:
    match = re.match(r"(\d+)", str(version or ""))
    return int(match.group(1)) if match else 0


class _RedisPart(_Part):
    name = "redis"

    def __init__(self, staged: Path | None, client, manifest: dict):
        self.client = client
        self.staged = staged
        self.plan = {"action": "none", "reason": "no Redis export in this backup"}
        if staged is None or client is None:
            return
        needs_dump = self._check_records(staged)
        if needs_dump:
            backup_version = (manifest.get("versions") or {}).get("redis", "")
            server_version = client.info("server").get("redis_version", "")
            if _redis_major(server_version) < _redis_major(backup_version):
                raise RestoreRefused(f"redis: {needs_dump} keys are stored as DUMP payloads of Redis {backup_version}; "
                                     f"this server runs {server_version} and cannot load them")
        plan = plan_redis_restore(client, staged)
        self.plan = {"action": "write", **plan.as_dict()}
        self.replace = plan.replace
        self.changes = bool(plan.create or plan.replace)

    @staticmethod
    def _check_records(path: Path) -> int:
        dumps = 0
        try:
            for line_no, record in enumerate(read_records(path), 1):
                ok = (isinstance(record, dict) and isinstance(record.get("k"), str) and isinstance(record.get("t"), str)
                      and type(record.get("ttl", -1)) is int and "v" in record)
                if not ok:
                    raise RestoreRefused(f"redis: export line {line_no} lacks a valid key, type, TTL or value")
                base64.b64decode(record["k"], validate=True)
                if record["t"] not in CORE_TYPES:
                    if not isinstance(record["v"], dict) or not isinstance(record["v"].get("dump"), str):
                        raise RestoreRefused(f"redis: export line {line_no} has type {record['t'][:20]!r} without a DUMP payload")
                    dumps += 1
        except (ValueError, UnicodeDecodeError) as exc:
            raise RestoreRefused(f"redis: the export is not readable: {str(exc)[:200]}") from None
        return dumps

    def conflict(self, force: bool) -> str | None:
        if self.plan.get("replace") and not force:
            return f"redis: {self.plan['replace']} keys already exist in the target (e.g. {self.plan['existing_sample'][:3]})"
        return None

    def save(self, safety: Path) -> None:
        """DUMP and TTL of every key the restore will write, or a note that it did not exist."""
        self.safety = safety / "redis-before.jsonl"
        with open(self.safety, "w") as out:
            batch: list[bytes] = []
            for record in read_records(self.staged):
                batch.append(base64.b64decode(record["k"]))
                if len(batch) >= 500:
                    self._save_batch(batch, out)
                    batch = []
            self._save_batch(batch, out)

    def _save_batch(self, keys: list[bytes], out) -> None:
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.dump(key)
            pipe.pttl(key)
        values = pipe.execute()
        for i, key in enumerate(keys):
            dump, ttl = values[2 * i], values[2 * i + 1]
            out.write(json.dumps({"k": base64.b64encode(key).decode(),
                                  "dump": base64.b64encode(dump).decode() if dump is not None else None,
                                  "ttl": ttl}) + "\n")

    def apply(self) -> dict:
        written = restore_redis(self.client, self.staged)
        self.ttl_problems = compare_ttls(self.client, self.staged)
        return {"keys": written}

    def undo(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        with open(self.safety) as handle:
            for line in handle:
                saved = json.loads(line)
                key = base64.b64decode(saved["k"])
                if saved["dump"] is None:
                    pipe.delete(key)
                else:
                    pipe.restore(key, max(saved["ttl"], 0), base64.b64decode(saved["dump"]), replace=True)
        pipe.execute()


class _DatabasePart(_Part):
    name = "database"

    def __init__(self, verified, engine, db_url: str, data_dir: Path | None):
        self.engine, self.db_url, self.data_dir = engine, db_url, data_dir
        self.verified = verified
        self.non_empty: dict = {}
        self.plan = {"action": "none", "reason": "no database dump in this backup"}
        db_members = [m for m in verified.staged if m.startswith("database/")]
        if not db_members or engine is None:
            return
        info = verified.manifest.get("database") or {}
        self.method, dialect = info.get("method"), info.get("dialect")
        if dialect != engine.dialect.name:
            raise RestoreRefused(f"database: the backup holds a {dialect} dump; the target is {engine.dialect.name}")
        expected = {"sqlite_backup_api": "database/trading.sqlite", "pg_dump": "database/trading.pgdump",
                    "logical": "database/logical/schema.json"}.get(self.method)
        if expected is None or expected not in verified.staged:
            raise RestoreRefused(f"database: manifest field database.method {str(self.method)[:40]!r} does not match the dump")
        self.tables = info.get("tables") or {}
        try:
            if self.method == "sqlite_backup_api":
                bdb.validate_sqlite_snapshot(verified.staged[expected])
            elif self.method == "pg_dump":
                bdb.check_pg_restore_can_read((info.get("versions") or {}).get("pg_dump", ""))
                bdb.pg_dump_toc(verified.staged[expected])
            else:
                bdb.validate_logical_spec(verified.staged[expected].parent)
        except bdb.DatabaseBackupError as exc:
            raise RestoreRefused(f"database: {exc}") from None
        counts = bdb.target_row_counts(engine)
        self.plan = {"action": "recreate", "method": self.method, "target_rows": counts,
                     "rows": {t: s.get("rows") for t, s in self.tables.items() if isinstance(s, dict)}}
        self.non_empty = {t: n for t, n in counts.items() if n}
        self.changes = True

    def conflict(self, force: bool) -> str | None:
        if self.non_empty and not force:
            return f"database: target is not empty ({self.non_empty}); use --force to replace it"
        return None

    def save(self, safety: Path) -> None:
        folder = safety / "database"
        folder.mkdir()
        if self.engine.dialect.name == "postgresql":
            self.saved = bdb.backup_postgres(self.engine, self.db_url, folder)
            self.saved_tables = list(bdb.target_row_counts(self.engine))
        else:
            source = _sqlite_target(self.db_url, self.data_dir)
            self.saved = None
            if source.exists():
                self.saved = folder / "trading.sqlite"
                bdb.backup_sqlite(source, self.saved)

    def apply(self) -> dict:
        # Each method restores in one transaction: until it returns, the target is as it was.
        done = _restore_database(self.verified, self.engine, self.db_url, self.data_dir, self.verified.manifest)
        self.changed = True
        after = self._stats()
        differ = [t for t, s in self.tables.items() if after.get(t) != s]
        if differ:
            raise RestoreRefused(f"database: tables {differ[:5]} do not match the backup after restoring")
        return done

    def _stats(self) -> dict:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                return bdb.table_stats(conn)
        return bdb.sqlite_table_stats(_sqlite_target(self.db_url, self.data_dir))

    def undo(self) -> None:
        if not getattr(self, "changed", False):
            return
        self.engine.dispose()
        if self.engine.dialect.name != "postgresql":
            target = _sqlite_target(self.db_url, self.data_dir)
            if self.saved is None:
                target.unlink(missing_ok=True)
            else:
                bdb.restore_sqlite_file(self.saved, target)
            self.engine.dispose()
            return
        method = self.saved["method"]
        if method == "pg_dump":
            bdb.restore_pg_dump(self.db_url, self.saved["files"][0][1], schema_exists=True)
        elif method == "logical":
            bdb.restore_logical(self.engine, self.saved["files"][0][1].parent)
        restored = set(self.tables) - set(self.saved_tables)
        if restored:  # tables the backup brought that did not exist before
            from sqlalchemy import text

            with self.engine.begin() as conn:
                quote = conn.dialect.identifier_preparer.quote
                names = ", ".join(f"{quote(bdb.SCHEMA)}.{quote(bdb.check_identifier(t, 'table'))}" for t in sorted(restored))
                conn.execute(text(f"DROP TABLE IF EXISTS {names}"))


class _TradingDataPart(_Part):
    name = "trading_data"

    def __init__(self, verified, data_dir: Path | None, min_free_bytes: int):
        self.plan = {"action": "none", "reason": "no trading data in this backup"}
        self.targets: dict[str, Path] = {}
        self.replaced: list[str] = []
        self.conflicts: list[str] = []
        self.verified = verified
        members = verified.members("trading_data")
        if not members or data_dir is None:
            return
        self.root = Path(data_dir)
        files = {"create": 0, "replace": 0, "unchanged": 0, "bytes": 0}
        for entry in members:
            target = _safe_target(self.root, entry["name"])
            if target.exists():
                if not target.is_file() or target.is_symlink():
                    raise RestoreRefused(f"trading_data: {target} exists and is not a regular file: refused")
                if target.stat().st_size == entry["size"] and sha256_file(target) == entry["sha256"]:
                    files["unchanged"] += 1
                    continue
                files["replace"] += 1
                self.replaced.append(entry["name"])
                self.conflicts.append(f"trading_data: {target} differs from the backup")
            else:
                files["create"] += 1
            files["bytes"] += entry["size"]
            self.targets[entry["name"]] = target
        need = files["bytes"] + sum(self.targets[m].stat().st_size for m in self.replaced) + min_free_bytes
        free = shutil.disk_usage(self.root).free
        if need > free:
            raise RestoreRefused(f"trading_data: restoring needs {need} bytes (files, safety copies and {min_free_bytes} "
                                 f"kept free) in {self.root}, only {free} are free")
        self.plan = {"action": "write" if self.targets else "unchanged", "target": str(self.root), **files}
        self.changes = bool(self.targets)

    def conflict(self, force: bool) -> str | None:
        if force or not self.conflicts:
            return None
        more = f"\n  trading_data: {len(self.conflicts)} files in all differ from the backup" if len(self.conflicts) > 5 else ""
        return "\n  ".join(self.conflicts[:5]) + more

    def save(self, safety: Path) -> None:
        self.safety = safety / "trading_data"
        for member in self.replaced:
            atomic_copy(self.targets[member], self.safety / member)
        self.written: list[str] = []

    def apply(self) -> dict:
        for member, target in self.targets.items():
            self.written.append(member)
            atomic_copy(self.verified.staged[member], target)
            entry = next(m for m in self.verified.manifest["members"] if m["name"] == member)
            if sha256_file(target) != entry["sha256"]:
                raise RestoreRefused(f"trading_data: {target} does not match the backup after restoring")
        return {"files": len(self.targets)}

    def undo(self) -> None:
        for member in self.written:
            if member in self.replaced:
                atomic_copy(self.safety / member, self.targets[member])
            else:
                self.targets[member].unlink(missing_ok=True)


def _safe_target(root: Path, member: str) -> Path:
    target = (root / member[len("data/"):]).resolve()
    if not str(target).startswith(str(root.resolve()) + "/"):
        raise ArchiveError(f"member {member!r} would land outside {root}: refused (tar slip)")
    return target


# --------------------------------------------------------------------------- restore


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
    data_folders: tuple[str, ...] = DEFAULT_DATA_FOLDERS,
    force: bool = False,
    dry_run: bool = False,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> RestoreReport:
    unknown = set(types) - set(TYPES)
    if unknown:
        raise ValueError(f"unknown restore type(s) {sorted(unknown)}; expected {TYPES}")
    if is_temporary_name(Path(archive_path).name):
        raise ArchiveError(f"{Path(archive_path).name} is the temporary file of an unfinished backup, not a backup")
    folders = tuple(data_folders) if "trading_data" in types else None
    remove_dead_temporaries(stage_root, (STAGE_PREFIX,))
    with owned_temp_dir(stage_root, STAGE_PREFIX) as stage:
        verified = verify_archive(
            archive_path, secret, stage,
            want=lambda name: member_type(name, folders) in types,
            accept=lambda name: member_type(name, folders),
            min_free_bytes=min_free_bytes,
        )
        manifest = verified.manifest
        for entry in manifest["members"]:
            if entry["kind"] != member_type(entry["name"], folders):
                raise ArchiveError(f"{Path(archive_path).name}: member {entry['name']!r} is listed as {entry['kind'][:20]!r}: refused")
        report = RestoreReport(str(archive_path), manifest.get("backup_id", ""), dry_run)
        parsed = parse_archive_name(Path(archive_path).name)
        if parsed and parsed[0] != report.backup_id:
            report.warnings.append(f"{Path(archive_path).name}: the file name says backup {parsed[0]} but its manifest says "
                                   f"{report.backup_id}; restored as backup {report.backup_id}")

        parts: list[_Part] = []
        for name in APPLY_ORDER:
            if name not in types:
                continue
            if name == "config":
                parts.append(_ConfigPart(verified.staged.get("config/maintenance.yml"), config_path))
            elif name == "redis":
                parts.append(_RedisPart(verified.staged.get("redis/keys.jsonl"), redis_client, manifest))
            elif name == "database":
                parts.append(_DatabasePart(verified, engine, db_url, data_dir))
            else:
                parts.append(_TradingDataPart(verified, data_dir, min_free_bytes))
        for part in parts:
            report.plan[part.name] = part.plan
        conflicts = [c for c in (part.conflict(force) for part in parts) if c]
        if conflicts:
            raise RestoreRefused("restore refused, nothing was changed:\n  " + "\n  ".join(conflicts) + "\nre-run with --force to overwrite")
        if dry_run:
            report.state = {part.name: "unchanged (dry run)" for part in parts}
            return report
        _apply_all([part for part in parts if part.changes], report, stage_root)
        for part in parts:
            report.state.setdefault(part.name, "unchanged: nothing to restore")
            if isinstance(part, _RedisPart) and getattr(part, "ttl_problems", None):
                report.problems += [f"redis: {p}" for p in part.ttl_problems]
        return report


def _apply_all(parts: list[_Part], report: RestoreReport, stage_root: Path) -> None:
    """Safety copies of every part first, then each part; on a failure, undo what was applied."""
    if not parts:
        return
    safety = Path(tempfile.mkdtemp(prefix=SAFETY_PREFIX, dir=stage_root))
    applied: list[_Part] = []
    try:
        for part in parts:
            try:
                part.save(safety)
            except Exception as exc:  # noqa: BLE001 - nothing changed yet: refuse cleanly
                raise RestoreRefused(f"{part.name}: could not take a safety copy before restoring, nothing was changed: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}") from None
        for part in parts:
            applied.append(part)
            report.restored[part.name] = part.apply()
            report.state[part.name] = "restored from the backup"
    except RestoreRefused as exc:
        if not applied:
            shutil.rmtree(safety, ignore_errors=True)
            raise
        _roll_back(applied, report, safety, exc)
    except Exception as exc:  # noqa: BLE001 - any failure part-way is rolled back and reported
        _roll_back(applied, report, safety, exc)
    shutil.rmtree(safety, ignore_errors=True)


def _roll_back(applied: list[_Part], report: RestoreReport, safety: Path, error: Exception) -> None:
    failed = applied[-1].name
    report.restored.pop(failed, None)
    kept = False
    for part in reversed(applied):
        try:
            part.undo()
            report.restored.pop(part.name, None)
            report.state[part.name] = "as before the restore (rolled back from the safety copy)"
        except Exception as undo_exc:  # noqa: BLE001 - reported with where the safety copy is
            kept = True
            report.state[part.name] = (f"NOT rolled back ({type(undo_exc).__name__}: {str(undo_exc)[:200]}); "
                                       f"its safety copy is kept in {safety}")
    for name in report.plan:
        report.state.setdefault(name, "unchanged (not reached)")
    if not kept:
        shutil.rmtree(safety, ignore_errors=True)
    summary = "; ".join(f"{name}: {state}" for name, state in report.state.items())
    raise RestoreFailed(f"restore failed at {failed}: {type(error).__name__}: {str(error)[:500]}\nstate now: {summary}", report)


def _sqlite_target(db_url: str, data_dir: Path | None) -> Path:
    from trading_maintenance.core.backups.run import sqlite_file_for

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
    report = DrillReport("", str(archive_path))
    remove_dead_temporaries(work_root, (DRILL_PREFIX,))
    with owned_temp_dir(work_root, DRILL_PREFIX) as stage:
        try:
            verified = verify_archive(archive_path, secret, stage, accept=lambda name: member_type(name, None))
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
        report.seconds = time.monotonic() - started
        return report


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
