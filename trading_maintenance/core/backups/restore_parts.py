"""The parts of a restore: each plans (validating everything, changing nothing), takes a safety
copy, applies, verifies and can undo what it applied."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.backups import database_logical, postgres_dump
from trading_maintenance.core.backups.archive import ArchiveError
from trading_maintenance.core.backups.archive_reader import file_identity, sha256_file
from trading_maintenance.core.backups.config_mask import same_config, unmask_config_text
from trading_maintenance.core.backups.redis_records import CORE_TYPES, compare_ttls, plan_redis_restore, read_records, restore_redis
from trading_maintenance.core.common.atomic import atomic_copy, atomic_write_bytes, atomic_write_text, fsync_dir

# Files placed at once: enough for the disk to merge their flushes, few enough not to crowd the platform.
RESTORE_IO_THREADS = 8


class RestoreRefused(ArchiveError):
    """The restore would overwrite data and was not forced (or the target is unsafe)."""


# --------------------------------------------------------------------------- parts


class RestorePart:
    """One restore type: plan (validating everything, changing nothing), save, apply, verify, undo."""

    name = ""
    changes = False

    def conflict(self, force: bool) -> str | None:
        return None

    def save(self, safety: Path) -> None:
        pass

    def safety_bytes(self) -> int:
        """About how much save() writes into the safety folder."""
        return 0

    def target_bytes(self) -> dict[Path, int]:
        """Bytes apply() writes, by the folder it writes them to (counted against that folder's disk)."""
        return {}

    def apply(self) -> dict:
        return {}

    def undo(self) -> None:
        pass


class ConfigPart(RestorePart):
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


class RedisPart(RestorePart):
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

    def safety_bytes(self) -> int:
        # The keys it replaces hold about what the backup brings for them: the export's size bounds it.
        return self.staged.stat().st_size if self.changes else 0

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


class DatabasePart(RestorePart):
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
                postgres_dump.check_pg_restore_can_read((info.get("versions") or {}).get("pg_dump", ""))
                postgres_dump.pg_dump_toc(verified.staged[expected])
            else:
                database_logical.validate_logical_spec(verified.staged[expected].parent)
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

    def safety_bytes(self) -> int:
        if not self.changes:
            return 0
        if self.engine.dialect.name == "postgresql":
            return bdb.schema_table_bytes(self.engine)
        source = _sqlite_target(self.db_url, self.data_dir)
        return sum(p.stat().st_size for p in (source, source.with_name(source.name + "-wal")) if p.exists())

    def save(self, safety: Path) -> None:
        folder = safety / "database"
        folder.mkdir()
        if self.engine.dialect.name == "postgresql":
            self.saved = postgres_dump.backup_postgres(self.engine, self.db_url, folder)
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
            postgres_dump.restore_pg_dump(self.db_url, self.saved["files"][0][1], schema_exists=True)
        elif method == "logical":
            database_logical.restore_logical(self.engine, self.saved["files"][0][1].parent)
        restored = set(self.tables) - set(self.saved_tables)
        if restored:  # tables the backup brought that did not exist before
            from sqlalchemy import text

            with self.engine.begin() as conn:
                quote = conn.dialect.identifier_preparer.quote
                names = ", ".join(f"{quote(bdb.SCHEMA)}.{quote(bdb.check_identifier(t, 'table'))}" for t in sorted(restored))
                conn.execute(text(f"DROP TABLE IF EXISTS {names}"))


class TradingDataPart(RestorePart):
    name = "trading_data"

    def __init__(self, verified, data_dir: Path | None):
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
        resolved: dict[str, str] = {}
        for entry in members:
            target, st = _safe_target(self.root, entry["name"], resolved)
            if st is not None:
                if not stat.S_ISREG(st.st_mode):
                    raise RestoreRefused(f"trading_data: {target} exists and is not a regular file: refused")
                if st.st_size == entry["size"] and sha256_file(target) == entry["sha256"]:
                    files["unchanged"] += 1
                    continue
                files["replace"] += 1
                self.replaced.append(entry["name"])
                self.conflicts.append(f"trading_data: {target} differs from the backup")
            else:
                files["create"] += 1
            files["bytes"] += entry["size"]
            self.targets[entry["name"]] = target
        self.plan = {"action": "write" if self.targets else "unchanged", "target": str(self.root), **files}
        self.changes = bool(self.targets)

    def conflict(self, force: bool) -> str | None:
        if force or not self.conflicts:
            return None
        more = f"\n  trading_data: {len(self.conflicts)} files in all differ from the backup" if len(self.conflicts) > 5 else ""
        return "\n  ".join(self.conflicts[:5]) + more

    def safety_bytes(self) -> int:
        return sum(self.targets[m].stat().st_size for m in self.replaced)

    def target_bytes(self) -> dict[Path, int]:
        """A staged file on the target's disk is renamed into place and needs no more room there."""
        if not self.targets:
            return {}
        disk = os.stat(existing_folder(self.root)).st_dev
        sizes = {m["name"]: m["size"] for m in self.verified.manifest["members"]}
        copied = sum(sizes[m] for m in self.targets if os.stat(self.verified.staged[m]).st_dev != disk)
        return {self.root: copied}

    def save(self, safety: Path) -> None:
        self.safety = safety / "trading_data"
        for member in self.replaced:
            atomic_copy(self.targets[member], self.safety / member)
        self.written: list[str] = []

    def apply(self) -> dict:
        """Each staged file (verified while staging) made durable and renamed over its target when both are
        on one disk, copied atomically otherwise, then checked again; the target folders made durable last.

        Durable at two points, each one syncfs per disk when it works (Linux >= 5.8 reports write-back
        errors): the staged files before any rename, the folders (the renames) after them. Without syncfs,
        each file and then each folder is fsynced, many at once so the disk's flushes overlap."""
        checksums = {m["name"]: m["sha256"] for m in self.verified.manifest["members"]}
        staged = [self.verified.staged[m] for m in self.targets]
        durable = bool(staged) and _syncfs(staged[0].parent)
        folders = sorted({target.parent for target in self.targets.values()})
        for folder in folders:  # made once each (a folder per file cost a syscall and Path work per file)
            folder.mkdir(parents=True, exist_ok=True)
        devices = {folder: os.stat(folder).st_dev for folder in folders}
        place = lambda item: self._place(*item, checksums[item[0]], durable, devices[item[1].parent])  # noqa: E731
        if durable:  # renames alone: the kernel's work, not sped up by threads
            for item in self.targets.items():
                place(item)
            by_disk: dict[int, list[Path]] = {}
            for folder in folders:  # the data folder may hold another disk's mount point: one syncfs per disk
                by_disk.setdefault(devices[folder], []).append(folder)
            unsynced = [folder for on_disk in by_disk.values() if not _syncfs(on_disk[0]) for folder in on_disk]
            with ThreadPoolExecutor(max_workers=RESTORE_IO_THREADS) as pool:
                list(pool.map(fsync_dir, unsynced))
        else:
            with ThreadPoolExecutor(max_workers=RESTORE_IO_THREADS) as pool:
                list(pool.map(place, self.targets.items()))
                list(pool.map(fsync_dir, folders))
        return {"files": len(self.targets)}

    def _place(self, member: str, target: Path, sha256: str, durable: bool, device: int) -> None:
        """`device`: that of the target's folder; `durable`: the staged file's data is on the disk already."""
        self.written.append(member)
        staged = self.verified.staged[member]
        verified = self.verified.identities.get(member)
        st = os.lstat(staged)
        if st.st_dev == device:
            if durable:
                before = file_identity(st)
            else:
                fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                    before = file_identity(os.fstat(fd))
                finally:
                    os.close(fd)
            os.replace(staged, target)
            after = file_identity(os.lstat(target))
            if verified is not None and verified == before and after[:4] == before[:4]:  # a rename changes ctime only
                return  # the very file whose SHA-256 staging verified, renamed: not read again
        else:
            atomic_copy(staged, target)
        if sha256_file(target) != sha256:
            raise RestoreRefused(f"trading_data: {target} does not match the backup after restoring")

    def undo(self) -> None:
        for member in self.written:
            if member in self.replaced:
                atomic_copy(self.safety / member, self.targets[member])
            else:
                self.targets[member].unlink(missing_ok=True)


def _syncfs(folder: Path) -> bool:
    """syncfs(2) of the file system holding folder: every file written there durable in one call, its
    write-back errors reported (Linux >= 5.8). False where unavailable or failing: fsync each file."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, AttributeError):
        return False
    try:
        release = tuple(int(part) for part in os.uname().release.split(".")[:2] if part.isdigit())
        return len(release) == 2 and release >= (5, 8) and libc.syncfs(fd) == 0
    except (AttributeError, ValueError):
        return False
    finally:
        os.close(fd)


def existing_folder(folder: Path) -> Path:
    """The folder, or its nearest ancestor that exists (whose disk it will be on)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _safe_target(root: Path, member: str, resolved: dict[str, str] | None = None) -> tuple[Path, os.stat_result | None]:
    """The member's path under root with every symlink resolved, refused outside root, and what is there now
    (lstat of the resolved path; None when nothing is). `resolved` caches resolved folders (root and the
    members' parents, by their path under root): realpath(parent/name) = realpath(realpath(parent)/name), so
    only a final component that is itself a symlink needs resolving again. Strings, not Path objects: this
    runs once per restored file."""
    resolved = {} if resolved is None else resolved
    real_root = resolved.get("")
    if real_root is None:
        real_root = resolved[""] = os.path.realpath(root)
    folder, _, name = member[len("data/"):].rpartition("/")
    real_folder = resolved.get(folder)
    if real_folder is None:
        real_folder = resolved[folder] = os.path.realpath(os.path.join(root, folder)) if folder else real_root
    target = os.path.join(real_folder, name)
    st = _lstat(target)
    if st is not None and stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(target)
        st = _lstat(target)
    if not target.startswith(real_root + "/"):
        raise ArchiveError(f"member {member!r} would land outside {root}: refused (tar slip)")
    return Path(target), st


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


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
        postgres_dump.restore_pg_dump(db_url, verified.staged["database/trading.pgdump"], schema_exists=exists)
        return {"method": method}
    logical_dir = verified.staged["database/logical/schema.json"].parent
    return {"method": method, "rows": database_logical.restore_logical(engine, logical_dir)}


def _schema_exists(engine) -> bool:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        return bdb.SCHEMA in inspect(conn).get_schema_names()
