"""Writing one snapshot into the repository: files cut into content-defined chunks (FastCDC), each new
chunk compressed and sealed by a pool of threads and appended to a pack; unchanged files of the
parent snapshot (same size, mtime and inode) are taken over without being read again.

Where the CPU goes (a first backup of 262 MB of parquet, ~1.1 s): zstd, then SHA-256 twice (each
file's checksum, from which a file of one chunk also takes its chunk id, and each pack's id), then
reading and writing; threads hand work over in batches of ~1 MiB (small files to the pool, encoded
chunks to the pack writer), since a hand-over per file cost as much kernel time as the hashing.

Order of durability: packs are fsynced and renamed, then the index naming them, then the snapshot.
A crash before the snapshot leaves no snapshot; packs it left unindexed are found by the next run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import zstandard
from fastcdc import fastcdc

from trading_maintenance.core.backups.archive import MANIFEST_VERSION, new_backup_id
from trading_maintenance.core.backups.archive_reader import check_member_name
from trading_maintenance.core.backups.archive_writer import ArchiveResult, MemberInfo
from trading_maintenance.core.backups.parent_members import ParentMembers, folder_digest
from trading_maintenance.core.backups.repository import (
    CHUNK_AVG,
    CHUNK_MAX,
    CHUNK_MIN,
    PACK_TARGET,
    PACK_TEMP_PREFIX,
    BlobRef,
    Repository,
    encode_chunk,
)
from trading_maintenance.core.backups.temporaries import fsync_dir
from trading_maintenance.core.common.gc_pause import paused_gc

READ_SEGMENT = 32 << 20
WRITE_BATCH = 1 << 20  # encoded chunks handed to the pack writer together (one thread wake-up, one writev)
WRITE_BATCH_PIECES = 64
IOV_BATCH = 512  # below the kernel's IOV_MAX (1024)
SMALL_BATCH, SMALL_BATCH_FILES = 1 << 20, 64  # small files read and encoded by one pool task together
MAX_QUEUED_WRITES = 8  # batches waiting for the pack writer: bounds the memory a slow disk can take (~8 MiB)


@dataclass
class StoredMember(MemberInfo):
    """An unchanged member recorded as the parent's line (`text`, its JSON), neither decoded nor encoded."""

    text: str = ""


class StoredBlock:
    """An unchanged folder recorded as the parent's lines of it (each a member's JSON), taken over whole."""

    __slots__ = ("lines", "size")

    def __init__(self, lines: list[str], size: int):
        self.lines = lines
        self.size = size  # the folder's files' bytes


# add_files' result for a file of a folder taken over whole from the parent (its size is the one listed)
REUSED_WITH_FOLDER = object()


class SnapshotResult(ArchiveResult):
    """The ArchiveResult of a snapshot. Its members (MemberInfo, and the manifest's decoded entries) are made
    when first asked for: a backup that reused thousands of members as text does not build them otherwise."""

    @property
    def members(self) -> list[MemberInfo]:
        if self._members is None:
            self._members = [m if not isinstance(m, dict) else
                             MemberInfo(m["name"], m["size"], m["sha256"], m["kind"], m.get("source", ""))
                             for m in _expanded(self._document["members"])]
        return self._members

    @members.setter
    def members(self, value: list[MemberInfo] | None) -> None:
        self._members = value

    @property
    def manifest(self) -> dict:
        document = self._document
        if any(not isinstance(m, dict) for m in document["members"]):
            document["members"] = [m if isinstance(m, dict) else json.loads(m.text) for m in _expanded(document["members"])]
        return document

    @manifest.setter
    def manifest(self, value: dict) -> None:
        self._document = value


def _expanded(members: list) -> list:
    """Members with each StoredBlock given as its lines' entries, decoded (a caller asked for them)."""
    if not any(type(m) is StoredBlock for m in members):
        return members
    out: list = []
    for m in members:
        if type(m) is StoredBlock:
            out += map(json.loads, m.lines)
        else:
            out.append(m)
    return out


def _folders_of(items: list) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive items whose names share a folder (a listing gives a folder's
    files together)."""
    groups: list[tuple[int, int]] = []
    start, current = 0, None
    for index, item in enumerate(items):
        name = item[0]
        folder = name[:name.rfind("/") + 1]
        if folder != current:
            if index:
                groups.append((start, index))
            start, current = index, folder
    if items:
        groups.append((start, len(items)))
    return groups


class SnapshotWriter:
    """add_file()/add_bytes() like ArchiveWriter; finish(manifest) writes the index and the snapshot.

    The caller holds the repository's exclusive lock for the writer's whole life.
    """

    def __init__(self, repo: Repository, work_dir: Path, parent: dict | None = None, backup_id: str | None = None,
                 now: datetime | None = None, threads: int | None = None, known: dict[str, BlobRef] | None = None,
                 taken: set[str] | None = None):
        """`known` (the loaded index) and `taken` (backup ids in use) spare reading them again when the
        caller has them already."""
        self.repo = repo
        self.work_dir = work_dir
        self.known = known if known is not None else repo.load_index()[0]
        # the parent's members: as the lines it stored (a ParentManifest from list_snapshots), else decoded
        texts = getattr(parent, "member_texts", None)
        self.parent = ParentMembers(texts, None if texts is not None else (parent or {}).get("members", []),
                                    (parent or {}).get("folders"))
        # (folder digest, the folder's first member, its files): folders recorded exactly from their listed
        # files, written into the snapshot so the next backup can take each unchanged one over whole
        self._folder_records: list[tuple[str, object, int]] = []
        if taken is None:
            taken = set()
            for name in repo.snapshot_ids():
                try:
                    taken.add(repo.read_snapshot(name).get("backup_id"))
                except Exception:  # noqa: BLE001 - an unreadable snapshot only cannot reserve its id
                    pass
        base = backup_id or new_backup_id(now)
        self.backup_id = next(c for c in (base if i == 0 else f"{base}-{i}" for i in range(10000)) if c not in taken)
        self.members: list[dict | StoredMember] = []  # StoredMember: an unchanged member, as the parent's text
        self.new_packs: dict[str, list[tuple[str, BlobRef]]] = {}
        self.written_here: set[str] = set()
        self.new_bytes = 0
        self.logical = 0
        self.reused_files = 0
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads or max(2, os.cpu_count() or 2))
        self._window = 4 * (threads or max(2, os.cpu_count() or 2))
        self._batch_window = 2 * (threads or max(2, os.cpu_count() or 2))  # batches of small files in flight
        self._pending: deque = deque()
        self._pack = None
        # Packs are written, hashed, fsynced and renamed by one thread of their own (in order), so the
        # disk's wait overlaps the chunking and compression of what follows; their folders are fsynced
        # once, before the index.
        self._publisher = ThreadPoolExecutor(max_workers=1)
        self._writes: deque = deque()
        self._published: list = []  # (future of _publish, its pack)
        self._ordered: list | None = None  # add_files' members by item, while it runs
        self._streamed: list[dict] = []  # members whose chunk ids are slots until the pool has encoded them
        self._started = time.monotonic()

    # ----------------------------------------------------------------- chunks and packs

    def _encode(self, data: bytes, chunk_id: str | None = None) -> tuple[str, bytes, int]:
        compressor = getattr(self._local, "zstd", None)
        if compressor is None:
            compressor = self._local.zstd = zstandard.ZstdCompressor(level=self.repo.zstd_level)
        chunk_id, stored = encode_chunk(self.repo.keys, data, compressor, chunk_id)
        return chunk_id, stored, len(data)

    def _submit(self, data: bytes, ids: list) -> None:
        slot = [None]
        ids.append(slot)
        self._pending.append((self._pool.submit(self._encode, data), slot))
        while len(self._pending) > self._window:
            self._drain_one()

    def _drain_one(self) -> None:
        future, slot = self._pending.popleft()
        chunk_id, stored, raw_length = future.result()
        slot[0] = chunk_id
        self._store(chunk_id, stored, raw_length)

    def _store(self, chunk_id: str, stored: bytes, raw_length: int) -> None:
        """Append one encoded chunk to the open pack, unless the repository or this snapshot has it."""
        if chunk_id in self.known or chunk_id in self.written_here:
            return
        if self._pack is None:
            path = Path(self.work_dir) / f"{PACK_TEMP_PREFIX}{os.urandom(8).hex()}"
            self._pack = {"fd": os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "path": path, "entries": [],
                          "hash": hashlib.sha256(), "size": 0, "queued": [], "queued_bytes": 0}
        pack = self._pack
        pack["queued"].append(stored)
        pack["queued_bytes"] += len(stored)
        pack["entries"].append((chunk_id, pack["size"], len(stored), raw_length))
        pack["size"] += len(stored)
        self.written_here.add(chunk_id)
        self.new_bytes += len(stored)
        if pack["size"] >= PACK_TARGET:
            self._close_pack()
        elif pack["queued_bytes"] >= WRITE_BATCH or len(pack["queued"]) >= WRITE_BATCH_PIECES:
            self._hand_over(pack)

    def _hand_over(self, pack: dict, tail: bytes | None = None) -> None:
        """The chunks queued for the pack go to the publisher thread as one write (one wake-up of that
        thread per ~1 MiB, not per chunk); at most MAX_QUEUED_WRITES such writes wait, bounding memory."""
        pieces, pack["queued"], pack["queued_bytes"] = pack["queued"], [], 0
        if tail is not None:
            pieces.append(tail)
            self._published.append((self._publisher.submit(self._publish, pack, pieces), pack))
            return
        if pieces:
            self._writes.append(self._publisher.submit(self._append, pack, pieces))
            while len(self._writes) > MAX_QUEUED_WRITES:
                self._writes.popleft().result()

    @staticmethod
    def _append(pack: dict, pieces: list[bytes]) -> None:
        """In the publisher thread: hashed (the pack's id is its SHA-256) and written with writev, no copy."""
        for piece in pieces:
            pack["hash"].update(piece)
        _write_all(pack["fd"], pieces)

    def _close_pack(self) -> None:
        pack, self._pack = self._pack, None
        header = self.repo.keys.seal(
            json.dumps([list(e) for e in pack["entries"]], separators=(",", ":")).encode(), b"pack-header")
        self._hand_over(pack, header + struct.pack(">I", len(header)))

    def _publish(self, pack: dict, pieces: list[bytes]) -> tuple[str, Path]:
        self._append(pack, pieces)
        os.fsync(pack["fd"])
        os.close(pack["fd"])
        pack["fd"] = None
        pack_id = pack["hash"].hexdigest()
        return pack_id, self.repo.publish_pack(pack["path"], pack_id, sync_folder=False)

    # ----------------------------------------------------------------- files

    def _chunk_stream(self, handle, size: int, ids: list) -> tuple[str, bool]:
        """Chunk exactly `size` bytes of handle (zeros pad a file that shrank); (sha256, shrank)."""
        digest = hashlib.sha256()
        carry = b""
        remaining = size
        short = False
        while True:
            data = handle.read(min(READ_SEGMENT, remaining)) if remaining else b""
            if remaining and len(data) < min(READ_SEGMENT, remaining):
                short = True
                data += b"\0" * (min(READ_SEGMENT, remaining) - len(data))
            remaining -= len(data)
            digest.update(data)
            buffer = carry + data if carry else data
            if not buffer:
                break
            if remaining == 0 and len(buffer) <= CHUNK_MIN:  # a small file (or tail) is one chunk: no cut points to find
                self._submit(buffer, ids)
                break
            cuts = list(fastcdc(buffer, min_size=CHUNK_MIN, avg_size=CHUNK_AVG, max_size=CHUNK_MAX))
            last = len(cuts) if remaining == 0 else len(cuts) - 1
            view = memoryview(buffer)
            for cut in cuts[:last]:
                self._submit(bytes(view[cut.offset:cut.offset + cut.length]), ids)
            carry = bytes(view[cuts[last].offset:]) if last < len(cuts) else b""
            if remaining == 0 and not carry:
                break
        return digest.hexdigest(), short

    def _unchanged(self, name: str, path: str | Path, kind: str, source: str,
                   listed: tuple[int, int, int] | None) -> tuple[dict, list[int]] | None:
        """(the parent snapshot's entry, the file's stat) when the file is unchanged: recognised by its
        metadata alone (size, mtime, inode), never opened, and every chunk of the entry is in the index."""
        previous = self.parent.entry(name) if source else None
        if previous is None:
            return None
        if listed is None:
            st = os.stat(path, follow_symlinks=False)
            listed = (st.st_size, st.st_mtime_ns, st.st_ino)
        stat = [*listed]
        if previous["stat"] != stat or previous.get("kind") != kind:
            return None
        chunks = previous.get("chunks")
        try:
            if type(chunks) is not list or not all(map(self.known.__contains__, chunks)):
                return None
        except TypeError:  # an unhashable chunk "id": not a valid entry
            return None
        return previous, stat

    def _reuse(self, name: str, path: str | Path, kind: str, source: str,
               listed: tuple[int, int, int] | None, order: int | None = None) -> MemberInfo | None:
        """The parent snapshot's entry when the file is unchanged, recorded: the parent's line as it is when
        it is exactly what would be recorded (ParentMembers.reusable_text), else the entry decoded and checked
        (see _unchanged) and encoded again."""
        if source and listed is not None:
            found = self.parent.reusable_text(name, kind, source, listed, self.known)
            if found is not None:
                self.reused_files += 1
                self.logical += listed[0]
                member = StoredMember(name, listed[0], found[1], kind, source, "", found[0])
                if order is None:
                    self.members.append(member)
                else:
                    self._ordered[order] = member
                return member
        unchanged = self._unchanged(name, path, kind, source, listed)
        if unchanged is None:
            return None
        previous, stat = unchanged
        self.reused_files += 1
        return self._record(name, stat[0], previous["sha256"], kind, source, list(previous["chunks"]), stat, order)

    def _read_small(self, path: str | Path) -> tuple | None:
        """In a pool thread: a file of at most one chunk read, hashed and encoded whole, so reading, hashing,
        compressing and sealing of many small files use every core. None when it has grown past one chunk."""
        with open(path, "rb", buffering=0) as handle:
            st = os.fstat(handle.fileno())
            if st.st_size > CHUNK_MIN:
                return None
            data = handle.read(st.st_size) if st.st_size else b""
        short = len(data) < st.st_size
        if short:
            data += b"\0" * (st.st_size - len(data))
        digest = hashlib.sha256(data).digest()  # the file's checksum, and its one chunk's id derives from it
        return st, digest.hex(), short, *self._encode(data, self.repo.keys.chunk_id_from_sha256(digest))

    def _read_small_batch(self, paths: list) -> list:
        """In a pool thread: several small files in turn (one hand-over between threads per batch, not per
        file); each result as _read_small's, or the FileNotFoundError/PermissionError that kept the file out."""
        done: list = []
        for path in paths:
            try:
                done.append(self._read_small(path))
            except (FileNotFoundError, PermissionError) as exc:
                done.append(exc)
        return done

    def add_files(self, items: list[tuple[str, str | Path, str, str, tuple[int, int, int] | None]]) -> list[MemberInfo | OSError]:
        """Many (name, path, kind, source, listed) at once: files of one chunk are read and encoded in the pool,
        in batches of about SMALL_BATCH bytes, while the main thread stores earlier ones and takes unchanged
        files from the parent. Each result is the member, the OSError that kept the file out (deleted or
        unreadable), for the caller to report, or REUSED_WITH_FOLDER for a file of a folder taken over whole
        from the parent (ParentMembers.reusable_block: listed exactly as then); the members are recorded in the
        items' order."""
        with paused_gc():
            return self._add_files(items)

    def _add_files(self, items: list) -> list[MemberInfo | OSError]:
        results: list[MemberInfo | OSError | None] = [None] * len(items)
        self._ordered = [None] * len(items)
        waiting: deque = deque()  # (indexes, future) of the batches in flight, oldest first
        batch: list = []
        batch_bytes = 0

        def collect() -> None:
            indexes, future = waiting.popleft()
            for index, done in zip(indexes, future.result()):
                name, path, kind, source, _ = items[index]
                if isinstance(done, OSError):
                    results[index] = done
                    continue
                if done is None:  # grew past one chunk since it was listed
                    try:
                        results[index] = self._add_one(name, path, kind, source, index)
                    except (FileNotFoundError, PermissionError) as exc:
                        results[index] = exc
                    continue
                st, sha, short, chunk_id, stored, raw_length = done
                self._store(chunk_id, stored, raw_length)
                member = self._record(name, st.st_size, sha, kind, source, [chunk_id],
                                      [st.st_size, st.st_mtime_ns, st.st_ino] if source else None, index)
                if short:
                    member.note = "file shrank while being read; padded"
                results[index] = member

        def send_batch() -> None:
            nonlocal batch, batch_bytes
            while self._pending:  # chunks of a larger file go to the pack first
                self._drain_one()
            waiting.append((batch, self._pool.submit(self._read_small_batch, [items[i][1] for i in batch])))
            batch, batch_bytes = [], 0
            while len(waiting) > self._batch_window:
                collect()

        try:
            # most files unchanged: a folder listed exactly as the parent recorded it is taken over as the parent's
            # lines of it; in any other folder each file is matched alone (_reuse)
            parent = self.parent
            blocks = bool(parent.folders)
            known, ordered = self.known, self._ordered
            fresh: list[tuple[int, int, str]] = []
            # every digest before the pool has work: hashing more than 2 KiB lets go of the GIL, and getting it
            # back from busy encoder threads cost ~15 us a folder
            folders = [(start, end, folder_digest(items[start:end])) for start, end in _folders_of(items)]
            for start, end, digest in folders:
                group = items[start:end]
                if blocks:
                    block = parent.reusable_block(digest, group, known)
                    if block is not None:
                        size = sum(item[4][0] for item in group)
                        ordered[start] = stored = StoredBlock(block, size)
                        results[start:end] = [REUSED_WITH_FOLDER] * (end - start)
                        self.reused_files += end - start
                        self.logical += size
                        self._folder_records.append((digest, stored, end - start))
                        continue
                fresh.append((start, end, digest))
                for index in range(start, end):
                    name, path, kind, source, listed = items[index]
                    check_member_name(name)
                    try:
                        reused = self._reuse(name, path, kind, source, listed, index)
                    except (FileNotFoundError, PermissionError) as exc:
                        results[index] = exc
                        continue
                    if reused is not None:
                        results[index] = reused
                    elif listed is None or listed[0] > CHUNK_MIN:
                        try:
                            results[index] = self._add_one(name, path, kind, source, index)
                        except (FileNotFoundError, PermissionError) as exc:
                            results[index] = exc
                    else:
                        batch.append(index)
                        batch_bytes += listed[0]
                        if batch_bytes >= SMALL_BATCH or len(batch) >= SMALL_BATCH_FILES:
                            send_batch()
            if batch:
                send_batch()
            while waiting:
                collect()
            for start, end, digest in fresh:
                if self._recorded_as_listed(items, results, start, end):
                    self._folder_records.append((digest, ordered[start], end - start))
            self.members.extend(entry for entry in self._ordered if entry is not None)
        finally:
            self._ordered = None
        return results

    def _recorded_as_listed(self, items: list, results: list, start: int, end: int) -> bool:
        """Whether every file of items[start:end] was recorded with exactly its listed size and stat, a source
        and no note (a file changed between the listing and its reading was recorded as read): only then do the
        folder's lines stand for what its digest covers."""
        ordered = self._ordered
        for index in range(start, end):
            entry, listed = ordered[index], items[index][4]
            if entry is None or listed is None or not items[index][3] or getattr(results[index], "note", ""):
                return False
            if type(entry) is dict:
                if entry.get("stat") != [*listed] or entry.get("source") != items[index][3] or entry["name"] != items[index][0]:
                    return False
            elif type(entry) is not StoredMember:  # a StoredMember's line matched the listed stat to be taken over
                return False
        return True

    def add_file(self, name: str, path: str | Path, kind: str, source: str = "",
                 listed: tuple[int, int, int] | None = None) -> MemberInfo:
        """`listed`: the file's (size, mtime_ns, inode) as the tree listing saw it, spares a stat."""
        check_member_name(name)
        reused = self._reuse(name, path, kind, source, listed)
        return reused if reused is not None else self._add_one(name, path, kind, source)

    def _add_one(self, name: str, path: str | Path, kind: str, source: str, order: int | None = None) -> MemberInfo:
        with open(path, "rb", buffering=0) as handle:
            st = os.fstat(handle.fileno())
            stat = [st.st_size, st.st_mtime_ns, st.st_ino]
            ids: list = []
            sha, short = self._chunk_stream(handle, st.st_size, ids)
        member = self._record(name, st.st_size, sha, kind, source, ids, stat if source else None, order, streamed=True)
        if short:
            member.note = "file shrank while being read; padded"
        return member

    def add_bytes(self, name: str, data: bytes, kind: str, source: str = "") -> MemberInfo:
        check_member_name(name)
        ids: list = []
        sha, _ = self._chunk_stream(io.BytesIO(data), len(data), ids)
        return self._record(name, len(data), sha, kind, source, ids, None, streamed=True)

    def _record(self, name, size, sha, kind, source, ids, stat, order: int | None = None, streamed: bool = False) -> MemberInfo:
        """`order`: the member's place among add_files' items (it is recorded there, whenever it is ready);
        `streamed`: its chunk ids are slots the pool fills in (resolved in finish)."""
        entry = {"name": name, "size": size, "sha256": sha, "kind": kind, "chunks": ids}
        if streamed:
            self._streamed.append(entry)
        if source:
            entry["source"] = source
        if stat:
            entry["stat"] = stat
        if order is None:
            self.members.append(entry)
        else:
            self._ordered[order] = entry
        self.logical += size
        return MemberInfo(name, size, sha, kind, source)

    def finish(self, manifest: dict) -> ArchiveResult:
        with paused_gc():
            return self._finish(manifest)

    def _finish(self, manifest: dict) -> ArchiveResult:
        while self._pending:
            self._drain_one()
        if self._pack is not None:
            self._close_pack()
        self._pool.shutdown()
        for write in self._writes:
            write.result()
        folders = set()
        for future, pack in self._published:
            entries = pack["entries"]
            pack_id, folder = future.result()
            self.new_packs[pack_id] = [(cid, BlobRef(pack_id, off, length, raw)) for cid, off, length, raw in entries]
            folders.add(folder)
        self._publisher.shutdown()
        for folder in sorted(folders):
            fsync_dir(folder)
        for entry in self._streamed:
            entry["chunks"] = [c[0] if isinstance(c, list) else c for c in entry["chunks"]]
        self.repo.write_index(self.new_packs)
        document = {"manifest_version": MANIFEST_VERSION, "backup_id": self.backup_id, "format": "repository",
                    "encrypted": self.repo.keys.encrypted, **manifest, "members": self.members,
                    "repository": {"new_bytes": self.new_bytes, "new_packs": len(self.new_packs), "reused_files": self.reused_files}}
        if self._folder_records:
            document["folders"] = self._folder_lines()
        snapshot_id = self.repo.write_snapshot(document)
        return SnapshotResult(self.backup_id, str(self.repo.root / "snapshots" / snapshot_id), snapshot_id, self.new_bytes,
                              snapshot_id, self.logical, None, document, time.monotonic() - self._started)

    def _folder_lines(self) -> dict[str, list[int]]:
        """Folder digest -> [its first line in the snapshot, its lines]."""
        first_line: dict[int, int] = {}
        line = 0
        for member in self.members:
            first_line[id(member)] = line
            line += len(member.lines) if type(member) is StoredBlock else 1
        return {digest: [first_line[id(first)], count] for digest, first, count in self._folder_records
                if id(first) in first_line}

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        self._publisher.shutdown(cancel_futures=True)
        # the open pack, and closed packs whose publishing was cancelled or failed: descriptors closed,
        # temporaries removed (a pack already renamed into data/ is left for the next run's repair)
        for pack in [self._pack] + [pack for _, pack in self._published]:
            if pack is not None and pack["fd"] is not None:
                os.close(pack["fd"])
                pack["fd"] = None
                Path(pack["path"]).unlink(missing_ok=True)
        self._pack = None


def _write_all(fd: int, pieces: list[bytes]) -> None:
    """Every byte of `pieces`, in order, however the kernel splits the writes."""
    views = [memoryview(p) for p in pieces if len(p)]
    while views:
        written = os.writev(fd, views[:IOV_BATCH])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]
