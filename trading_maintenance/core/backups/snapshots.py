"""Snapshots in the repository: listing and choosing one, staging its files verified for a restore,
exporting one as a portable archive, retention (forget, then prune unreferenced packs), repair and check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from trading_maintenance.core.backups.archive import (
    MIN_FREE_BYTES,
    ArchiveError,
    BackupRef,
    plan_backup_retention,
    select_backup,
)
from trading_maintenance.core.backups.archive_reader import (
    VerifiedArchive,
    check_member_name,
    file_identity,
    manifest_identity,
    manifest_members,
)
from trading_maintenance.core.backups.archive_writer import ArchiveResult, ArchiveWriter
from trading_maintenance.core.backups.parent_members import split_members
from trading_maintenance.core.backups.repository import (
    BlobRef,
    ParentManifest,
    Repository,
    RepositoryError,
    decode_chunk,
    snapshot_manifest,
    snapshot_summary,
    summary_ok,
)
from trading_maintenance.core.backups.temporaries import owned_temp_dir
from trading_maintenance.core.common.gc_pause import paused_gc

LOCATION_PREFIX = "repository:"
STAGE_WINDOW = 16  # steps (chunks read ahead) in flight while staging: bounds memory to ~16 chunks


@dataclass
class SnapshotListing:
    refs: list[BackupRef]  # oldest first; name = snapshot file id, size = logical bytes
    details: dict[str, dict] = field(default_factory=dict)  # snapshot file id -> files, new bytes
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    newest: dict | None = None  # the newest snapshot's manifest, with keep_newest


def list_snapshots(repo: Repository, keep_newest: bool = False, cached: bool = True) -> SnapshotListing:
    """Every readable snapshot (each authenticated; identified by the summary it begins with, or by its whole
    manifest when written before summaries); with keep_newest the newest one's manifest is kept (a backup's
    parent), so it is not read a second time: a ParentManifest whose member_texts are its members' lines, or
    None and its members decoded and checked when it is laid out otherwise.

    With `cached`, a snapshot whose summary an earlier listing read (Repository.load_summaries, sealed with
    the key) is not read again: a week of daily snapshots cost a second backup ~2.5 ms each to decrypt whole.
    The check and retention list with cached=False: they must find a snapshot that no longer reads."""
    with paused_gc():
        return _list_snapshots(repo, keep_newest, cached)


def _list_snapshots(repo: Repository, keep_newest: bool, cached: bool) -> SnapshotListing:
    listing = SnapshotListing([])
    newest = None  # ((created, backup_id), name, plaintext or None when the summary came from the cache)
    known = repo.load_summaries() if cached else {}
    summaries: dict[str, dict] = {}
    read_whole = False  # a summary not (or not soundly) in the cache: the cache is written again
    for name in repo.snapshot_ids():
        label = f"snapshot {name[:16]}"
        try:
            plaintext = None
            summary = known.get(name)
            if not summary_ok(summary):
                read_whole = True
                plaintext = repo.read_snapshot_plaintext(name)
                summary = snapshot_summary(plaintext) or _summary_of(snapshot_manifest(plaintext, name), label)
            backup_id, created = manifest_identity(summary, label)
        except ArchiveError as exc:
            listing.problems.append(str(exc))
            listing.unreadable.append(name)
            continue
        summaries[name] = {k: summary[k] for k in ("backup_id", "created_at", "files", "logical_bytes", "new_bytes")}
        listing.refs.append(BackupRef(backup_id, name, created, summary["logical_bytes"], LOCATION_PREFIX + name,
                                      repo.keys.encrypted, "repository"))
        listing.details[name] = {k: summary[k] for k in ("files", "logical_bytes", "new_bytes")}
        if keep_newest and (newest is None or (created, backup_id) > newest[0]):
            newest = ((created, backup_id), name, plaintext)
    listing.refs.sort(key=lambda r: (r.created_at, r.backup_id))
    while newest is not None:
        _, name, plaintext = newest
        label = f"snapshot {name[:16]}"
        try:
            if plaintext is None:
                plaintext = repo.read_snapshot_plaintext(name)
            # laid out one member per line: the members stay text, each matched and checked only when a file
            # asks for it (see parent_members); otherwise decoded and checked whole
            split = split_members(plaintext)
            if split is None:
                manifest = snapshot_manifest(plaintext, name)
                manifest_members(manifest, label)
            else:
                manifest = split[0]
            if manifest_identity(manifest, label)[0] != next(r.backup_id for r in listing.refs if r.name == name):
                raise RepositoryError(f"{label}: its summary names another backup than its manifest: refused")
            listing.newest = ParentManifest(manifest)
            listing.newest.member_texts = None if split is None else split[1]
            break
        except ArchiveError as exc:  # left out, as if unreadable: the next newest is the parent
            listing.problems.append(str(exc))
            listing.unreadable.append(name)
            listing.refs = [r for r in listing.refs if r.name != name]
            listing.details.pop(name, None)
        newest = None
        if listing.refs:
            ref = listing.refs[-1]
            newest = ((ref.created_at, ref.backup_id), ref.name, None)
    for name in listing.unreadable:
        summaries.pop(name, None)
    if cached and (read_whole or summaries.keys() != known.keys()):  # or one forgotten or found unreadable since
        repo.store_summaries(summaries)
    return listing


def _summary_of(manifest: dict, label: str) -> dict:
    """A summary (as snapshot_summary gives) computed from a whole manifest, its members checked."""
    members = manifest_members(manifest, label)
    added = (manifest.get("repository") or {}).get("new_bytes", 0)
    return {"backup_id": manifest.get("backup_id"), "created_at": manifest.get("created_at"), "files": len(members),
            "logical_bytes": sum(m["size"] for m in members.values()), "new_bytes": added if type(added) is int else 0}


def select_snapshot(repo: Repository, which: str = "latest", on_date: str | None = None, tz: str = "America/New_York") -> BackupRef:
    """`latest`, a backup id, a snapshot id (or a unique prefix of either), narrowed to `on_date`."""
    refs = list_snapshots(repo).refs
    by_file = [r for r in refs if which not in ("", "latest") and len(which) >= 8 and r.name.startswith(which)]
    if len(by_file) == 1 and not on_date:
        return by_file[0]
    return select_backup(refs, which, on_date, tz)


def _chunk_refs(manifest: dict, index: dict[str, BlobRef], label: str, listed: dict[str, dict]) -> dict[str, list[tuple[str, BlobRef]]]:
    """Every member's chunks, checked against the index and its declared size before anything is read."""
    layout: dict[str, list[tuple[str, BlobRef]]] = {}
    for entry in manifest["members"]:
        name = entry["name"]
        chunks = entry.get("chunks")
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            raise RepositoryError(f"{label}: member {name!r} has no valid chunk list")
        missing = [c for c in chunks if c not in index]
        if missing:
            raise RepositoryError(f"{label}: member {name!r} needs {len(missing)} chunks that no index lists "
                                  f"(e.g. {missing[0][:16]}): the repository is damaged; run `backups check`")
        refs = [(c, index[c]) for c in chunks]
        if sum(r.raw_length for _, r in refs) != listed[name]["size"]:
            raise RepositoryError(f"{label}: member {name!r}: its chunks do not add up to its declared size")
        layout[name] = refs
    return layout


def checked_snapshot(repo: Repository, snapshot: str, accept: Callable[[str], None] | None = None):
    """A snapshot's manifest checked before anything is staged: identity, member names (each also given to
    `accept`, which raises to refuse it), every chunk indexed and adding up to its member's size, every pack
    present. Returns (label, listed members, their chunk refs, the VerifiedArchive to fill in)."""
    label = f"snapshot {snapshot[:16]}"
    manifest = repo.read_snapshot(snapshot)
    manifest_identity(manifest, label)
    listed = manifest_members(manifest, label)
    for name in listed:
        check_member_name(name)
        if accept is not None:
            accept(name)
    index, _ = repo.load_index()
    layout = _chunk_refs(manifest, index, label, listed)
    absent = sorted({r.pack for refs in layout.values() for _, r in refs if not repo.pack_path(r.pack).is_file()})
    if absent:
        raise RepositoryError(f"{label}: packs {[p[:16] for p in absent[:3]]} are missing: the repository is damaged")
    verified = VerifiedArchive(LOCATION_PREFIX + snapshot, manifest, {}, sum(m["size"] for m in listed.values()))
    return label, listed, layout, verified


def wanted_with_room(label: str, listed: dict, want: Callable[[str], bool] | None, stage_dir: Path,
                     min_free_bytes: int) -> dict:
    """The members `want` selects, refused before anything is written unless stage_dir's disk holds them
    with min_free_bytes to spare."""
    wanted = {n: m for n, m in listed.items() if want is None or want(n)}
    need = sum(m["size"] for m in wanted.values())
    stage_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(stage_dir).free
    if need + min_free_bytes > free:
        raise RepositoryError(f"{label}: staging needs {need} bytes plus {min_free_bytes} kept free in {stage_dir}, "
                              f"only {free} are free: refused before writing")
    return wanted


def stage_snapshot(repo: Repository, snapshot: str, stage_dir: Path | None, want: Callable[[str], bool] | None = None,
                   accept: Callable[[str], None] | None = None, min_free_bytes: int = MIN_FREE_BYTES) -> VerifiedArchive:
    """The snapshot's manifest checked (names, sizes, chunks indexed, packs present), then the members
    `want` selects written to stage_dir chunk by chunk, every chunk authenticated and checked against
    its id and every file against its SHA-256. Nothing outside stage_dir is written."""
    label, listed, layout, verified = checked_snapshot(repo, snapshot, accept)
    if stage_dir is None:
        return verified
    wanted = wanted_with_room(label, listed, want, stage_dir, min_free_bytes)
    _stage_members(repo, label, layout, wanted, stage_dir, verified)
    return verified


def _stage_members(repo: Repository, label: str, layout: dict, wanted: dict[str, dict], stage_dir: Path,
                   verified: VerifiedArchive) -> None:
    """Chunks read in order and decoded (authenticated, decompressed, checked against their ids) by a
    pool of threads, written in order, each file checked against its SHA-256 once complete; a file of
    one chunk is decoded, checked and written whole by a thread of the pool.
    Trading data is staged flat: its files are renamed into place afterwards, and a copy of a deep
    tree would cost as many folders to make and remove again as the restore itself makes."""
    flat = stage_dir / "data-files"
    steps: deque = deque()
    current: dict = {}
    handles: dict[str, object] = {}

    def stage_whole(name: str, member: dict, target: Path, chunk: tuple | None) -> tuple:
        """A file of at most one chunk, in a thread of the pool: decoded, checked against its SHA-256,
        then written (creating a file costs the kernel more than decoding a small one: both cores share it)."""
        data = decode_chunk(repo.keys, *chunk) if chunk else b""
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), member["sha256"]):
            raise RepositoryError(f"{label}: member {name!r} does not match its checksum: the repository was altered")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(target, "xb") as out:
            out.write(data)
            out.flush()
            return file_identity(os.fstat(out.fileno()))

    def advance() -> None:
        step = steps.popleft()
        if step[0] == "whole":
            _, name, target, future = step
            identity = future.result()
            verified.staged[name] = target
            verified.identities[name] = identity
        elif step[0] == "open":
            _, name, member, target = step
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            current.update(name=name, member=member, target=target, out=open(target, "xb"), digest=hashlib.sha256())
        elif step[0] == "chunk":
            data = step[1].result()
            current["digest"].update(data)
            current["out"].write(data)
        else:
            current["out"].flush()
            st = os.fstat(current["out"].fileno())
            current["out"].close()
            if not hmac.compare_digest(current["digest"].hexdigest(), current["member"]["sha256"]):
                raise RepositoryError(f"{label}: member {current['name']!r} does not match its checksum: "
                                      f"the repository was altered")
            verified.staged[current["name"]] = current["target"]
            verified.identities[current["name"]] = file_identity(st)
            current.clear()

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        try:
            for number, (name, member) in enumerate(wanted.items()):
                target = flat / f"{number:08d}" if name.startswith("data/") else stage_dir / name
                if len(layout[name]) <= 1:
                    chunk = None
                    for chunk_id, ref in layout[name]:
                        handle = handles.get(ref.pack) or handles.setdefault(ref.pack, open(repo.pack_path(ref.pack), "rb"))
                        chunk = (chunk_id, repo.read_stored(chunk_id, ref, handle), ref.raw_length)
                    steps.append(("whole", name, target, pool.submit(stage_whole, name, member, target, chunk)))
                    while len(steps) > STAGE_WINDOW:
                        advance()
                    continue
                steps.append(("open", name, member, target))
                for chunk_id, ref in layout[name]:
                    handle = handles.get(ref.pack) or handles.setdefault(ref.pack, open(repo.pack_path(ref.pack), "rb"))
                    stored = repo.read_stored(chunk_id, ref, handle)
                    steps.append(("chunk", pool.submit(decode_chunk, repo.keys, chunk_id, stored, ref.raw_length)))
                    while len(steps) > STAGE_WINDOW:
                        advance()
                steps.append(("close",))
            while steps:
                advance()
        finally:
            for step in steps:
                if step[0] in ("chunk", "whole"):
                    step[-1].cancel()
            if "out" in current:
                current["out"].close()
            for handle in handles.values():
                handle.close()


def export_snapshot(repo: Repository, snapshot: str, dest_dir: Path, secret: str | None, fmt: str = "tar.zst") -> ArchiveResult:
    """One portable archive (today's format, verifiable with verify_archive) holding the snapshot's files."""
    manifest = repo.read_snapshot(snapshot)
    with owned_temp_dir(repo.root / "tmp", ".backup-work-") as work:
        with ArchiveWriter(dest_dir, manifest["backup_id"], fmt, secret) as writer:
            for entry in manifest_members(manifest, f"snapshot {snapshot[:16]}").values():
                staged = stage_snapshot(repo, snapshot, work, want=lambda n, name=entry["name"]: n == name).staged[entry["name"]]
                writer.add_file(entry["name"], staged, entry["kind"], entry.get("source", ""))
                staged.unlink()
            kept = {k: v for k, v in manifest.items() if k not in ("members", "manifest_version", "backup_id", "format",
                                                                    "encrypted", "repository", "summary")}
            return writer.finish({**kept, "exported_from_snapshot": snapshot})


# --------------------------------------------------------------------------- repair, retention, check


@dataclass
class RepairReport:
    reindexed_packs: list[str] = field(default_factory=list)
    removed_packs: list[str] = field(default_factory=list)  # unreadable packs no index lists
    dropped_index_entries: list[str] = field(default_factory=list)  # packs an index named that are missing

    @property
    def changed(self) -> bool:
        return bool(self.reindexed_packs or self.removed_packs or self.dropped_index_entries)

    def lines(self) -> list[str]:
        return ([f"pack {p[:16]} was written but never indexed (a backup crashed): re-indexed" for p in self.reindexed_packs]
                + [f"pack {p[:16]} was written but never indexed and is unreadable: removed" for p in self.removed_packs]
                + [f"an index names pack {p[:16]}, which is missing: its entries were dropped, so snapshots using it show as "
                   f"damaged and the next backup stores those chunks again" for p in self.dropped_index_entries])


def repair(repo: Repository, dry_run: bool = False,
           loaded: tuple[dict[str, BlobRef], dict[str, list[str]]] | None = None) -> RepairReport:
    """Packs no index lists and index entries whose pack is missing, found and made consistent.
    `loaded` is the index as load_index() just returned it. The caller holds the exclusive lock."""
    report = RepairReport()
    _, files = loaded or repo.load_index()
    on_disk = repo.pack_ids()
    indexed = {pack for packs in files.values() for pack in packs}
    recovered: dict[str, list[tuple[str, BlobRef]]] = {}
    for pack in sorted(on_disk - indexed):
        try:
            recovered[pack] = repo.read_pack_header(pack)
            report.reindexed_packs.append(pack)
        except RepositoryError:
            report.removed_packs.append(pack)
    report.dropped_index_entries = sorted(indexed - on_disk)
    if dry_run or not report.changed:
        return report
    repo.write_index(recovered)
    for pack in report.removed_packs:
        repo.pack_path(pack).unlink(missing_ok=True)
    if report.dropped_index_entries:
        _rewrite_index(repo, keep=on_disk)
    return report


def _rewrite_index(repo: Repository, keep: set[str]) -> None:
    """One new index of the packs in `keep`, durable before the old index files are removed."""
    _, files = repo.load_index()
    packs: dict[str, list[tuple[str, BlobRef]]] = {}
    for name in files:
        for pack, entries in repo.read_index_file(name).items():
            if pack in keep:
                packs[pack] = [(e[0], BlobRef(pack, e[1], e[2], e[3])) for e in entries]
    new = repo.write_index(packs)
    for name in files:
        if name != new:
            repo.remove_file("index", name)


@dataclass
class RetentionReport:
    forgotten: list[str] = field(default_factory=list)  # backup ids
    kept: list[str] = field(default_factory=list)
    removed_packs: int = 0
    freed_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def retention_plan(listing, retention_days: int, now: datetime, protect: set[str], where: str = "") -> tuple[RetentionReport, object]:
    """The report and plan of a retention run over `listing` (a local or remote listing: refs, problems,
    unreadable): what is forgotten and kept, and why a prune is skipped."""
    report = RetentionReport(problems=list(listing.problems))
    plan = plan_backup_retention(listing.refs, retention_days, now, protect)
    report.forgotten = [r.backup_id for r in plan.delete]
    report.kept = [r.backup_id for r in plan.keep]
    if listing.unreadable:
        report.problems.append(f"{where}prune skipped: a snapshot that cannot be read may reference any pack")
    return report, plan


def unreferenced_packs(pack_chunks: dict[str, Iterable[str]], kept_manifests: Iterable[dict]) -> set[str]:
    """The packs none of whose chunks a kept snapshot's members reference."""
    referenced: set[str] = set()
    for manifest in kept_manifests:
        for entry in manifest.get("members", []):
            referenced.update(entry.get("chunks", []))
    return {pack for pack, chunks in pack_chunks.items() if referenced.isdisjoint(chunks)}


def forget_and_prune(repo: Repository, retention_days: int, now: datetime, protect: set[str] = frozenset(),
                     dry_run: bool = False) -> RetentionReport:
    """Snapshots older than retention_days forgotten (the newest and `protect` always kept), then packs
    no remaining snapshot references removed: new index first, old index files next, packs last, so
    a crash at any point leaves only unindexed packs, which repair() finds. The caller holds the lock."""
    listing = list_snapshots(repo, cached=False)  # a snapshot that no longer reads stops the prune
    report, plan = retention_plan(listing, retention_days, now, protect)
    if dry_run:
        return report
    for ref in plan.delete:
        repo.remove_file("snapshots", ref.name)
    if listing.unreadable:
        return report
    _, files = repo.load_index()
    pack_chunks: dict[str, set[str]] = {}
    for name in files:
        for pack, entries in repo.read_index_file(name).items():
            pack_chunks.setdefault(pack, set()).update(e[0] for e in entries)
    unused = unreferenced_packs(pack_chunks, (repo.read_snapshot(ref.name) for ref in plan.keep))
    if not unused:
        return report
    _rewrite_index(repo, keep=set(pack_chunks) - unused)
    for pack in sorted(unused):
        path = repo.pack_path(pack)
        try:
            report.freed_bytes += path.stat().st_size
            path.unlink()
            report.removed_packs += 1
        except FileNotFoundError:
            pass
    return report


def check_repository(repo: Repository, read_data: bool = False) -> list[str]:
    """Problems found (empty: consistent). Structure always; with read_data every chunk is read and verified."""
    problems: list[str] = []
    try:
        index, files = repo.load_index()
    except RepositoryError as exc:
        return [str(exc)]
    on_disk = repo.pack_ids()
    indexed = {pack for packs in files.values() for pack in packs}
    problems += [f"pack {p[:16]} is listed in an index but missing" for p in sorted(indexed - on_disk)]
    problems += [f"pack {p[:16]} is not listed in any index (a crashed backup; the next backup re-indexes it)"
                 for p in sorted(on_disk - indexed)]
    listing = list_snapshots(repo, cached=False)
    problems += listing.problems
    for ref in listing.refs:
        try:
            stage_snapshot(repo, ref.name, None)
        except RepositoryError as exc:
            problems.append(str(exc))
    for pack in sorted(on_disk & indexed):
        size = repo.pack_path(pack).stat().st_size
        try:
            header = repo.read_pack_header(pack)
        except RepositoryError as exc:
            problems.append(str(exc))
            continue
        if any(ref.offset + ref.length > size for _, ref in header):
            problems.append(f"pack {pack[:16]} is shorter than its header says")
            continue
        if read_data:
            with open(repo.pack_path(pack), "rb") as handle:
                for chunk_id, ref in header:
                    try:
                        repo.read_chunk(chunk_id, ref, handle)
                    except RepositoryError as exc:
                        problems.append(str(exc))
    return problems


def snapshot_time(ref: BackupRef) -> str:
    return ref.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
