"""Restore from a backup archive.

Order of work, always: verify the manifest and every checksum (writing nothing), refuse any member
outside the layout of the requested types, stage the needed members in a private folder, check
every part can be restored (tools, versions, content, free space) and plan it against its target,
refuse on conflicts unless forced; then (unless a dry run) take a safety copy of everything that
will change, apply part by part and verify. A failure part-way puts back what was already changed
from the safety copy and the report says exactly what state each part is in.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trading_maintenance.core.backups.archive import MIN_FREE_BYTES, ArchiveError, is_temporary_name, parse_archive_name
from trading_maintenance.core.backups.archive_reader import verify_archive
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.backups.restore_parts import (
    ConfigPart,
    DatabasePart,
    RedisPart,
    RestorePart,
    RestoreRefused,
    TradingDataPart,
    existing_folder,
)
from trading_maintenance.core.backups.snapshot_restore import stage_snapshot_for_restore
from trading_maintenance.core.backups.temporaries import owned_temp_dir, remove_dead_temporaries, remove_legacy_stage_dirs

TYPES = ("config", "redis", "trading_data", "database")
APPLY_ORDER = ("database", "redis", "config", "trading_data")  # the part most likely to fail goes first
STAGE_PREFIX = "restore-stage-"
SAFETY_PREFIX = "restore-safety-"
CONFIG_MEMBERS = ("config/maintenance.yml", "config/effective_settings.json")
DATABASE_MEMBERS = ("database/trading.sqlite", "database/trading.pgdump", "database/logical/schema.json")
LOGICAL_TABLE_MEMBER = re.compile(r"^database/logical/[A-Za-z_][A-Za-z0-9_]{0,62}\.jsonl$")
REDIS_MEMBER = re.compile(r"^redis/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Folders of the data root a restore never writes, whatever the configuration says.
NEVER_RESTORED = ("backups", "temp")
DEFAULT_DATA_FOLDERS = ("parquet", "exports", "reports")


class RestoreFailed(RuntimeError):
    """A restore failed part-way; `report.state` says what each part looks like now."""

    def __init__(self, message: str, report: RestoreReport):
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
    repository: Repository | None = None,
) -> RestoreReport:
    """Restore `types` from an archive file, or with `repository` from the snapshot whose id is archive_path."""
    unknown = set(types) - set(TYPES)
    if unknown:
        raise ValueError(f"unknown restore type(s) {sorted(unknown)}; expected {TYPES}")
    if is_temporary_name(Path(archive_path).name):
        raise ArchiveError(f"{Path(archive_path).name} is the temporary file of an unfinished backup, not a backup")
    folders = tuple(data_folders) if "trading_data" in types else None
    remove_dead_temporaries(stage_root, (STAGE_PREFIX,))
    remove_legacy_stage_dirs(stage_root)
    with owned_temp_dir(stage_root, STAGE_PREFIX) as stage:
        want = lambda name: member_type(name, folders) in types  # noqa: E731
        accept = lambda name: member_type(name, folders)  # noqa: E731
        if repository is None:
            verified = verify_archive(archive_path, secret, stage, want=want, accept=accept, min_free_bytes=min_free_bytes)
        else:
            with repository.lock(exclusive=False):
                verified = stage_snapshot_for_restore(repository, str(archive_path), stage, want=want, accept=accept,
                                                      min_free_bytes=min_free_bytes)
        manifest = verified.manifest
        for entry in manifest["members"]:
            if entry["kind"] != member_type(entry["name"], folders):
                raise ArchiveError(f"{Path(archive_path).name}: member {entry['name']!r} is listed as {entry['kind'][:20]!r}: refused")
        report = RestoreReport(str(archive_path), manifest.get("backup_id", ""), dry_run)
        parsed = parse_archive_name(Path(archive_path).name)
        if parsed and parsed[0] != report.backup_id:
            report.warnings.append(f"{Path(archive_path).name}: the file name says backup {parsed[0]} but its manifest says "
                                   f"{report.backup_id}; restored as backup {report.backup_id}")

        parts: list[RestorePart] = []
        for name in APPLY_ORDER:
            if name not in types:
                continue
            if name == "config":
                parts.append(ConfigPart(verified.staged.get("config/maintenance.yml"), config_path))
            elif name == "redis":
                parts.append(RedisPart(verified.staged.get("redis/keys.jsonl"), redis_client, manifest))
            elif name == "database":
                parts.append(DatabasePart(verified, engine, db_url, data_dir))
            else:
                parts.append(TradingDataPart(verified, data_dir))
        for part in parts:
            report.plan[part.name] = part.plan
        conflicts = [c for c in (part.conflict(force) for part in parts) if c]
        if conflicts:
            raise RestoreRefused("restore refused, nothing was changed:\n  " + "\n  ".join(conflicts) + "\nre-run with --force to overwrite")
        check_free_space(parts, stage_root, min_free_bytes)
        if dry_run:
            report.state = {part.name: "unchanged (dry run)" for part in parts}
            return report
        _apply_all([part for part in parts if part.changes], report, stage_root)
        for part in parts:
            report.state.setdefault(part.name, "unchanged: nothing to restore")
            if isinstance(part, RedisPart) and getattr(part, "ttl_problems", None):
                report.problems += [f"redis: {p}" for p in part.ttl_problems]
        return report


def check_free_space(parts: list[RestorePart], stage_root: Path, min_free_bytes: int) -> None:
    """Every disk the restore writes to (safety copies under stage_root, restored files under their
    targets) must hold what goes there plus min_free_bytes; refused before anything changes."""
    needs: dict[int, dict] = {}
    for part in parts:
        if not part.changes:
            continue
        writes = [(stage_root, part.safety_bytes(), f"{part.name} safety copy")]
        writes += [(folder, size, f"{part.name} files") for folder, size in part.target_bytes().items()]
        for folder, size, what in writes:
            if size <= 0:
                continue
            disk = needs.setdefault(existing_folder(folder).stat().st_dev, {"folder": folder, "bytes": 0, "what": []})
            disk["bytes"] += size
            disk["what"].append(f"{what} {size}")
    for disk in needs.values():
        free = shutil.disk_usage(existing_folder(disk["folder"])).free
        if disk["bytes"] + min_free_bytes > free:
            raise RestoreRefused(f"restoring needs {disk['bytes']} bytes ({', '.join(disk['what'])}) plus {min_free_bytes} "
                                 f"kept free on the disk of {disk['folder']}, only {free} are free: refused, nothing was changed")


def _apply_all(parts: list[RestorePart], report: RestoreReport, stage_root: Path) -> None:
    """Safety copies of every part first, then each part; on a failure, undo what was applied."""
    if not parts:
        return
    safety = Path(tempfile.mkdtemp(prefix=SAFETY_PREFIX, dir=stage_root))
    applied: list[RestorePart] = []
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


def _roll_back(applied: list[RestorePart], report: RestoreReport, safety: Path, error: Exception) -> None:
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

