"""Writing one snapshot into the repository: files cut into content-defined chunks (FastCDC), each new
chunk compressed and sealed by a pool of threads and appended to a pack; unchanged files of the
parent snapshot (same size, mtime and inode) are taken over without being read again.

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
from datetime import datetime
from pathlib import Path

import zstandard
from fastcdc import fastcdc

from trading_maintenance.core.backups.archive import MANIFEST_VERSION, new_backup_id
from trading_maintenance.core.backups.archive_reader import check_member_name
from trading_maintenance.core.backups.archive_writer import ArchiveResult, MemberInfo
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

READ_SEGMENT = 32 << 20
MAX_QUEUED_WRITES = 64  # chunks waiting for the pack writer: bounds the memory a slow disk can take
ZSTD_LEVEL = 3


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
        self.parent = {m["name"]: m for m in (parent or {}).get("members", []) if isinstance(m, dict) and "stat" in m}
        if taken is None:
            taken = set()
            for name in repo.snapshot_ids():
                try:
                    taken.add(repo.read_snapshot(name).get("backup_id"))
                except Exception:  # noqa: BLE001 - an unreadable snapshot only cannot reserve its id
                    pass
        base = backup_id or new_backup_id(now)
        self.backup_id = next(c for c in (base if i == 0 else f"{base}-{i}" for i in range(10000)) if c not in taken)
        self.members: list[dict] = []
        self.new_packs: dict[str, list[tuple[str, BlobRef]]] = {}
        self.written_here: set[str] = set()
        self.new_bytes = 0
        self.logical = 0
        self.reused_files = 0
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads or max(2, os.cpu_count() or 2))
        self._window = 4 * (threads or max(2, os.cpu_count() or 2))
        self._pending: deque = deque()
        self._pack = None
        # Packs are written, hashed, fsynced and renamed by one thread of their own (in order), so the
        # disk's wait overlaps the chunking and compression of what follows; their folders are fsynced
        # once, before the index.
        self._publisher = ThreadPoolExecutor(max_workers=1)
        self._writes: deque = deque()
        self._published: list = []
        self._started = time.monotonic()

    # ----------------------------------------------------------------- chunks and packs

    def _encode(self, data: bytes, chunk_id: str | None = None) -> tuple[str, bytes, int]:
        compressor = getattr(self._local, "zstd", None)
        if compressor is None:
            compressor = self._local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
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
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._pack = {"file": os.fdopen(fd, "wb", buffering=1 << 20), "path": path, "entries": [],
                          "hash": hashlib.sha256(), "size": 0}
        pack = self._pack
        self._writes.append(self._publisher.submit(self._append, pack, stored))
        while len(self._writes) > MAX_QUEUED_WRITES:
            self._writes.popleft().result()
        pack["entries"].append((chunk_id, pack["size"], len(stored), raw_length))
        pack["size"] += len(stored)
        self.written_here.add(chunk_id)
        self.new_bytes += len(stored)
        if pack["size"] >= PACK_TARGET:
            self._close_pack()

    @staticmethod
    def _append(pack: dict, stored: bytes) -> None:
        pack["file"].write(stored)
        pack["hash"].update(stored)

    def _close_pack(self) -> None:
        pack, self._pack = self._pack, None
        header = self.repo.keys.seal(
            json.dumps([list(e) for e in pack["entries"]], separators=(",", ":")).encode(), b"pack-header")
        tail = header + struct.pack(">I", len(header))
        self._published.append((self._publisher.submit(self._publish, pack, tail), pack["entries"]))

    def _publish(self, pack: dict, tail: bytes) -> tuple[str, Path]:
        self._append(pack, tail)
        pack["file"].flush()
        os.fsync(pack["file"].fileno())
        pack["file"].close()
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

    def _reuse(self, name: str, path: str | Path, kind: str, source: str,
               listed: tuple[int, int, int] | None) -> MemberInfo | None:
        """The parent snapshot's entry when the file is unchanged: recognised by its metadata alone, never opened."""
        previous = self.parent.get(name) if source else None
        if previous is None:
            return None
        if listed is None:
            st = os.stat(path, follow_symlinks=False)
            listed = (st.st_size, st.st_mtime_ns, st.st_ino)
        stat = list(listed)
        if (previous.get("stat") == stat and previous.get("kind") == kind
                and all(c in self.known for c in previous.get("chunks", []))):
            self.reused_files += 1
            return self._record(name, stat[0], previous["sha256"], kind, source, list(previous["chunks"]), stat)
        return None

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

    def add_files(self, items: list[tuple[str, str | Path, str, str, tuple[int, int, int] | None]]) -> list[MemberInfo | OSError]:
        """Many (name, path, kind, source, listed) at once, in order: files of one chunk are read and encoded in
        the pool while earlier ones are stored. Each result is the member, or the OSError that kept the file out
        (deleted or unreadable), for the caller to report; the members are recorded in the items' order."""
        results: list[MemberInfo | OSError | None] = [None] * len(items)
        waiting: deque = deque()

        def collect() -> None:
            index, name, path, kind, source, future = waiting.popleft()
            try:
                done = future.result()
            except (FileNotFoundError, PermissionError) as exc:
                results[index] = exc
                return
            if done is None:  # grew past one chunk since it was listed
                try:
                    results[index] = self._add_one(name, path, kind, source)
                except (FileNotFoundError, PermissionError) as exc:
                    results[index] = exc
                return
            st, sha, short, chunk_id, stored, raw_length = done
            self._store(chunk_id, stored, raw_length)
            member = self._record(name, st.st_size, sha, kind, source, [chunk_id], [st.st_size, st.st_mtime_ns, st.st_ino] if source else None)
            if short:
                member.note = "file shrank while being read; padded"
            results[index] = member

        for index, (name, path, kind, source, listed) in enumerate(items):
            check_member_name(name)
            try:
                reused = self._reuse(name, path, kind, source, listed)
            except (FileNotFoundError, PermissionError) as exc:
                reused = exc
            if reused is not None or listed is None or listed[0] > CHUNK_MIN:
                while waiting:  # members stay in the items' order
                    collect()
                if reused is None:
                    try:
                        reused = self._add_one(name, path, kind, source)
                    except (FileNotFoundError, PermissionError) as exc:
                        reused = exc
                results[index] = reused
                continue
            while self._pending:  # chunks of a larger file go to the pack first
                self._drain_one()
            waiting.append((index, name, path, kind, source, self._pool.submit(self._read_small, path)))
            while len(waiting) > self._window:
                collect()
        while waiting:
            collect()
        return results

    def add_file(self, name: str, path: str | Path, kind: str, source: str = "",
                 listed: tuple[int, int, int] | None = None) -> MemberInfo:
        """`listed`: the file's (size, mtime_ns, inode) as the tree listing saw it, spares a stat."""
        check_member_name(name)
        reused = self._reuse(name, path, kind, source, listed)
        return reused if reused is not None else self._add_one(name, path, kind, source)

    def _add_one(self, name: str, path: str | Path, kind: str, source: str) -> MemberInfo:
        with open(path, "rb", buffering=0) as handle:
            st = os.fstat(handle.fileno())
            stat = [st.st_size, st.st_mtime_ns, st.st_ino]
            ids: list = []
            sha, short = self._chunk_stream(handle, st.st_size, ids)
        member = self._record(name, st.st_size, sha, kind, source, ids, stat if source else None)
        if short:
            member.note = "file shrank while being read; padded"
        return member

    def add_bytes(self, name: str, data: bytes, kind: str, source: str = "") -> MemberInfo:
        check_member_name(name)
        ids: list = []
        sha, _ = self._chunk_stream(io.BytesIO(data), len(data), ids)
        return self._record(name, len(data), sha, kind, source, ids, None)

    def _record(self, name, size, sha, kind, source, ids, stat) -> MemberInfo:
        entry = {"name": name, "size": size, "sha256": sha, "kind": kind, "chunks": ids}
        if source:
            entry["source"] = source
        if stat:
            entry["stat"] = stat
        self.members.append(entry)
        self.logical += size
        return MemberInfo(name, size, sha, kind, source)

    def finish(self, manifest: dict) -> ArchiveResult:
        while self._pending:
            self._drain_one()
        if self._pack is not None:
            self._close_pack()
        self._pool.shutdown()
        for write in self._writes:
            write.result()
        folders = set()
        for future, entries in self._published:
            pack_id, folder = future.result()
            self.new_packs[pack_id] = [(cid, BlobRef(pack_id, off, length, raw)) for cid, off, length, raw in entries]
            folders.add(folder)
        self._publisher.shutdown()
        for folder in sorted(folders):
            fsync_dir(folder)
        for entry in self.members:
            entry["chunks"] = [c[0] if isinstance(c, list) else c for c in entry["chunks"]]
        self.repo.write_index(self.new_packs)
        document = {"manifest_version": MANIFEST_VERSION, "backup_id": self.backup_id, "format": "repository",
                    "encrypted": self.repo.keys.encrypted, **manifest, "members": self.members,
                    "repository": {"new_bytes": self.new_bytes, "new_packs": len(self.new_packs), "reused_files": self.reused_files}}
        snapshot_id = self.repo.write_snapshot(document)
        return ArchiveResult(self.backup_id, str(self.repo.root / "snapshots" / snapshot_id), snapshot_id, self.new_bytes,
                             snapshot_id, self.logical, [MemberInfo(m["name"], m["size"], m["sha256"], m["kind"], m.get("source", ""))
                                                         for m in self.members], document, time.monotonic() - self._started)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        self._publisher.shutdown(cancel_futures=True)
        if self._pack is not None:
            self._pack["file"].close()
            Path(self._pack["path"]).unlink(missing_ok=True)
            self._pack = None
