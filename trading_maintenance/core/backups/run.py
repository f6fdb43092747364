"""One backup from start to finish, as plain functions the Dagster asset and the CLI both call.

plan_backup() says what would go in (the dry run reports exactly this); create_backup() writes the
archive; verify, upload and retention follow in the asset, in that order, so retention only ever
runs after the new backup proved readable.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import sqlite3
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from pathlib import Path

from trading_maintenance.core.backups import database as bdb
from trading_maintenance.core.backups import postgres_dump
from trading_maintenance.core.backups.archive import WORK_PREFIX, new_backup_id
from trading_maintenance.core.backups.archive_writer import ArchiveResult, ArchiveWriter
from trading_maintenance.core.backups.config_mask import mask_config_text
from trading_maintenance.core.backups.redis_snapshot import export_redis
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.snapshot_writer import REUSED_WITH_FOLDER, SnapshotWriter
from trading_maintenance.core.backups.snapshots import list_snapshots, repair
from trading_maintenance.core.backups.temporaries import owned_temp_dir
from trading_maintenance.core.common.gc_pause import paused_gc

DAILY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
PARTS = ("config", "redis", "database", "trading_data")


@functools.cache  # the installed distribution's metadata is read once per process (~0.8-2.5 ms per read)
def project_version() -> str:
    try:
        from importlib.metadata import version

        return version("trading-maintenance")
    except Exception:  # noqa: BLE001
        return "unknown"


@dataclass
class PlannedFile:
    member: str
    path: str
    size: int
    stat: tuple[int, int, int] | None = None  # (size, mtime_ns, inode) as listed: an unchanged file is not stat'ed again


@dataclass
class BackupPlan:
    parts: list[str]
    files: list[PlannedFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    excluded_old_daily: int = 0

    @property
    def trading_bytes(self) -> int:
        return sum(f.size for f in self.files)


def collect_trading_files(data_dir: Path, include: list[str], recent_days: int, now: datetime) -> tuple[list[PlannedFile], list[str], int]:
    """Files under the configured folders of the data root; daily market files older than
    `recent_days` are left out (the monthly archives beside them carry those days). One scandir
    per folder: a re-run over a large unchanged tree costs little more than listing it."""
    with paused_gc():  # thousands of plans, no cycles
        return _collect_trading_files(data_dir, include, recent_days, now)


def _collect_trading_files(data_dir: Path, include: list[str], recent_days: int, now: datetime) -> tuple[list[PlannedFile], list[str], int]:
    files: list[PlannedFile] = []
    skipped: list[str] = []
    excluded = 0
    cutoff = (now - timedelta(days=recent_days)).date().isoformat() if recent_days > 0 else None
    data_root = Path(data_dir).resolve()
    prefix = len(data_root.as_posix()) + 1
    for folder in include:
        root = (data_root / folder).resolve()
        if not root.is_relative_to(data_root) or not root.is_dir():
            continue
        pending = [root.as_posix()]
        while pending:
            current = pending.pop()
            try:
                entries = sorted(os.scandir(current), key=_entry_name)
            except OSError as exc:
                skipped.append(f"{current}: {exc.strerror}")
                continue
            subfolders = []
            for entry in entries:
                name = entry.name
                if entry.is_symlink():
                    skipped.append(f"{entry.path}: symlink (not followed)")
                    continue
                if entry.is_dir():
                    subfolders.append(entry.path)
                    continue
                if name.startswith(".") and name.endswith((".tmp", ".partial")):
                    continue
                match = DAILY_FILE.match(name) if cutoff else None
                if match and _is_date(match.group(1)) and match.group(1) < cutoff:
                    excluded += 1
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    skipped.append(f"{entry.path}: {exc.strerror}")
                    continue
                files.append(PlannedFile(f"data/{entry.path[prefix:]}", entry.path, st.st_size,
                                         (st.st_size, st.st_mtime_ns, st.st_ino)))
            pending.extend(reversed(subfolders))
    return files, skipped, excluded


_entry_name = attrgetter("name")


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        return False


def sqlite_file_for(db_url: str, data_dir: Path) -> Path:
    if db_url.startswith("sqlite"):
        return Path(db_url.split("///", 1)[1])
    return Path(data_dir) / "db" / "trading.db"


@dataclass
class BackupOutcome:
    archive: ArchiveResult
    part_bytes: dict
    redis: dict
    database: dict
    files: int
    skipped: list[str]
    warnings: list[str]

    def summary(self) -> dict:
        return {
            "backup_id": self.archive.backup_id,
            "archive": self.archive.path,
            "archive_bytes": self.archive.size,
            "archive_sha256": self.archive.sha256,
            "uncompressed_bytes": self.archive.uncompressed_bytes,
            "compression_ratio": self.archive.compression_ratio,
            "seconds": round(self.archive.seconds, 3),
            "part_bytes": self.part_bytes,
            "redis_keys": self.redis.get("keys", 0),
            "database_method": self.database.get("method"),
            "database_tables": {t: s["rows"] for t, s in self.database.get("tables", {}).items()},
            "trading_files": self.files,
            "skipped": self.skipped,
            "warnings": self.warnings,
        }


def create_backup(
    *,
    dest_dir: Path,
    fmt: str,
    secret: str | None,
    parts: list[str],
    config_path: Path | None,
    effective_settings: dict,
    secret_keys: set[str],
    redis_client=None,
    engine=None,
    db_url: str = "",
    data_dir: Path | None = None,
    trading_files: list[PlannedFile] | None = None,
    database_method: str = "auto",
    now: datetime | None = None,
    work_root: Path | None = None,
    repository: Repository | None = None,
) -> BackupOutcome:
    """Write one archive holding the requested parts, or with `repository` one snapshot into it
    (unchanged files of the newest snapshot are not read again); raises on a store failure
    (nothing published)."""
    now = now or datetime.now(timezone.utc)
    part_bytes = {p: 0 for p in parts}
    versions = {"project": project_version(), "python": platform.python_version()}
    warnings: list[str] = []
    redis_stats: dict = {}
    db_info: dict = {}
    Path(dest_dir).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        # one pause of the cyclic collector for the whole backup (see paused_gc): the members, index and listing
        # it builds are tens of thousands of objects without cycles, and each pause's end would otherwise
        # let a collection of the whole heap start
        stack.enter_context(paused_gc())
        work = stack.enter_context(owned_temp_dir(work_root or tempfile.gettempdir(), WORK_PREFIX))
        if repository is None:
            writer = stack.enter_context(ArchiveWriter(dest_dir, new_backup_id(now), fmt, secret))
        else:
            stack.enter_context(repository.lock())
            loaded = repository.load_index()
            repaired = repair(repository, loaded=loaded)
            if repaired.changed:
                warnings += repaired.lines()
                loaded = repository.load_index()
            listing = list_snapshots(repository, keep_newest=True)
            parent = listing.newest
            pack_work = stack.enter_context(owned_temp_dir(repository.root / "tmp", WORK_PREFIX))
            writer = stack.enter_context(SnapshotWriter(repository, pack_work, parent, now=now, known=loaded[0],
                                                        taken={r.backup_id for r in listing.refs}))
        if "config" in parts:
            if config_path and Path(config_path).exists():
                masked, _ = mask_config_text(Path(config_path).read_text(), secret_keys)
                part_bytes["config"] += writer.add_bytes("config/maintenance.yml", masked.encode(), "config", str(config_path)).size
            eff = json.dumps(effective_settings, indent=1, sort_keys=True, default=str).encode()
            part_bytes["config"] += writer.add_bytes("config/effective_settings.json", eff, "config").size
        if "redis" in parts and redis_client is not None:
            info = redis_client.info("server")
            versions["redis"] = info.get("redis_version", "unknown")
            export_path = work / "keys.jsonl"
            stats = export_redis(redis_client, export_path)
            redis_stats = {**stats.as_dict(), "db": redis_client.connection_pool.connection_kwargs.get("db", 0)}
            part_bytes["redis"] += writer.add_file("redis/keys.jsonl", export_path, "redis").size
            export_path.unlink()
        if "database" in parts and engine is not None:
            if engine.dialect.name == "postgresql":
                db_info = postgres_dump.backup_postgres(engine, db_url, work, database_method)
            else:
                source = sqlite_file_for(db_url, data_dir)
                if not source.exists():
                    from trading_maintenance.core.trading.schema import metadata

                    metadata.create_all(engine, checkfirst=True)
                snapshot = work / "trading.sqlite"
                tables = bdb.backup_sqlite(source, snapshot)
                db_info = {
                    "dialect": "sqlite",
                    "method": "sqlite_backup_api",
                    "why": "embedded SQLite file",
                    "files": [("database/trading.sqlite", snapshot)],
                    "tables": tables,
                    "versions": {"sqlite": sqlite3.sqlite_version},
                }
            versions.update(db_info["versions"])
            for member, path in db_info["files"]:
                part_bytes["database"] += writer.add_file(member, path, "database").size
                Path(path).unlink()
        files_written = 0
        if "trading_data" in parts:
            planned_files = list(trading_files or [])
            if repository is not None:  # the repository reads and encodes many small files at once
                added = writer.add_files([(p.member, p.path, "trading_data", p.path, p.stat) for p in planned_files])
            else:
                added = []
                for planned in planned_files:
                    try:
                        added.append(writer.add_file(planned.member, planned.path, "trading_data", planned.path))
                    except (FileNotFoundError, PermissionError) as exc:
                        added.append(exc)
            written = 0
            for planned, member in zip(planned_files, added):
                if member is REUSED_WITH_FOLDER:
                    written += planned.size
                    files_written += 1
                    continue
                if isinstance(member, OSError):  # FileNotFoundError or PermissionError: the file is left out
                    if isinstance(member, FileNotFoundError):
                        warnings.append(f"{planned.path}: deleted before it could be read; skipped")
                    else:
                        warnings.append(f"{planned.path}: {member.strerror}; skipped")
                    continue
                if member.note:
                    warnings.append(f"{planned.path}: {member.note}")
                written += member.size
                files_written += 1
            part_bytes["trading_data"] += written
        manifest = {
            "created_at": now.isoformat(),
            "parts": parts,
            "versions": versions,
            "part_bytes": part_bytes,
            "redis": redis_stats,
            "database": {k: v for k, v in db_info.items() if k != "files"},
            "trading_files": files_written,
            "warnings": warnings,
            "host": platform.node(),
            "argv0": Path(sys.argv[0]).name,
        }
        result = writer.finish(manifest)
    return BackupOutcome(result, part_bytes, redis_stats, {k: v for k, v in db_info.items() if k != "files"}, files_written, [], warnings)
