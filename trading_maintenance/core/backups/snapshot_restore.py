"""Staging a snapshot's files for a restore: the restore's own reading of the repository, made for speed
without giving up a check.

The snapshot is validated exactly as snapshots.stage_snapshot validates it (names, sizes, every chunk
indexed, packs present, free space) before anything is written. Then:

  * files of one chunk are staged in batches by the threads of a pool: a batch is a run of chunks close
    together in one pack, read with one pread and opened, decompressed, checked and written file by file
    (a task per file cost more in hand-offs than the file's own work);
  * a chunk is authenticated (AES-256-GCM, its id as associated data) and decompressed within the size
    the index declares, refused before decompressing when its frame announces more; its id is not
    computed again: the whole file is checked against the SHA-256 the snapshot lists, which covers
    every byte of every chunk (and is the only content check an unencrypted repository can have);
  * files of several chunks have their chunks decoded by the pool, hashed and written in order here.

Nothing outside stage_dir is written; every staged file is created exclusively (O_EXCL, O_NOFOLLOW) and
its identity recorded once its SHA-256 matched, so the restore renames it into place without reading it
again. Memory stays bounded: at most STAGE_WINDOW batches or chunks are in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zstandard

from trading_maintenance.core.backups.archive import MIN_FREE_BYTES
from trading_maintenance.core.backups.archive_reader import (
    VerifiedArchive,
    file_identity,
)
from trading_maintenance.core.backups.repository import BlobRef, Keys, Repository, RepositoryError
from trading_maintenance.core.backups.snapshots import checked_snapshot, wanted_with_room

STAGE_WINDOW = 8  # batches or chunks in flight: bounds memory to ~8 x (BATCH_BYTES + one decoded chunk)
BATCH_BYTES = 4 << 20  # stored bytes one batch reads from its pack at most
BATCH_FILES = 64
BATCH_GAP = 256 << 10  # bytes of other chunks a batch may read past (a pack shared with other snapshots)
# Staged trading data is spread over this many folders: creating a file locks its folder, and two threads
# creating in one folder wait on each other (measured: 2 threads, 3,700 files, one folder 2.0-3.4 CPU s,
# 16 folders 1.3-1.6).
STAGE_FOLDERS = 16
_PLAIN, _ZSTD = 0, 1  # the first byte of a chunk's body (repository.encode_chunk)
# A stored chunk is at most its plaintext, one encoding byte, a nonce and a tag (stored plain when zstd
# does not make it smaller): an index declaring more would make a read allocate what it says.
STORED_OVERHEAD = 1 + 12 + 16
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def stage_snapshot_for_restore(repo: Repository, snapshot: str, stage_dir: Path,
                               want: Callable[[str], bool] | None = None, accept: Callable[[str], None] | None = None,
                               min_free_bytes: int = MIN_FREE_BYTES) -> VerifiedArchive:
    """The members `want` selects, staged in stage_dir and verified (see the module's docstring)."""
    label, listed, layout, verified = checked_snapshot(repo, snapshot, accept)
    wanted = wanted_with_room(label, listed, want, stage_dir, min_free_bytes)
    _Stager(repo, label, stage_dir, verified).run(wanted, layout)
    # staged in pack order; listed in the snapshot's order, as every other reader of a backup lists them
    verified.staged = {name: verified.staged[name] for name in wanted}
    return verified


def open_chunk(keys: Keys, chunk_id: str, stored, raw_length: int, decompressor: zstandard.ZstdDecompressor) -> bytes:
    """A chunk's plaintext: authenticated, then decompressed within raw_length (a frame announcing more is
    refused before any memory is given to it). Its content is checked by the caller's file SHA-256."""
    what = f"chunk {chunk_id[:16]}"
    body = memoryview(keys.open(stored, chunk_id.encode(), what))
    kind = body[0] if len(body) else -1
    if kind == _ZSTD:
        try:
            announced = zstandard.frame_content_size(body[1:])
            if announced > raw_length:
                raise RepositoryError(f"{what} announces {announced} bytes, more than the {raw_length} its index declares")
            data = decompressor.decompress(body[1:], max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise RepositoryError(f"{what} does not decompress: {exc}") from None
    elif kind == _PLAIN:
        data = body[1:].tobytes()
    else:
        raise RepositoryError(f"{what} has an unknown encoding")
    if len(data) != raw_length:
        raise RepositoryError(f"{what} is {len(data)} bytes, not the {raw_length} its index declares: altered or corrupt")
    return data


def _write_new(path: Path, data) -> tuple:
    """A new file holding data (refused if the name exists, a symlink included); its identity once written."""
    fd = os.open(path, _CREATE, 0o666)
    try:
        _write_all(fd, data)
        return file_identity(os.fstat(fd))
    finally:
        os.close(fd)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Stager:
    """One staging run: a decompressor per thread, steps completed in order."""

    def __init__(self, repo: Repository, label: str, stage_dir: Path, verified: VerifiedArchive):
        self.repo, self.label, self.stage_dir, self.verified = repo, label, stage_dir, verified
        self.local = threading.local()
        # Trading data is staged flat (in STAGE_FOLDERS folders): its files are renamed into place afterwards,
        # and a copy of a deep tree would cost as many folders to make and remove again as the restore makes.
        self.flat = stage_dir / "data-files"
        self.folders: set[Path] = set()
        self.fd: int | None = None  # the file of several chunks being written by the main thread
        self.current: tuple = ()

    def run(self, wanted: dict[str, dict], layout: dict[str, list[tuple[str, BlobRef]]]) -> None:
        singles, multiples = [], []
        for number, (name, member) in enumerate(wanted.items()):
            refs = layout[name]
            for chunk_id, ref in refs:
                if ref.length > ref.raw_length + STORED_OVERHEAD:
                    raise RepositoryError(f"{self.label}: the index declares {ref.length} stored bytes for chunk {chunk_id[:16]} "
                                          f"of {ref.raw_length}: corrupt or altered, refused before reading")
            target = self._target(number, name)
            (singles if len(refs) <= 1 else multiples).append((name, member, target, refs))
        steps: deque = deque()
        try:
            with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
                try:
                    for batch in self._batches(singles):
                        self._read_ahead(*batch[:3])
                        steps.append(("batch", pool.submit(self._stage_batch, *batch)))
                        self._drain(steps, STAGE_WINDOW)
                    for name, member, target, refs in multiples:
                        self._stage_chunked(pool, steps, name, member, target, refs)
                    self._drain(steps, 0)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        finally:
            if self.fd is not None:
                os.close(self.fd)

    def _target(self, number: int, name: str) -> Path:
        target = self.flat / f"{number % STAGE_FOLDERS:02d}" / f"{number:08d}" if name.startswith("data/") else self.stage_dir / name
        if target.parent not in self.folders:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.folders.add(target.parent)
        return target

    def _read_ahead(self, pack: str | None, offset: int, length: int) -> None:
        """The kernel reads the next batch's bytes while earlier batches decode (nothing when cached)."""
        if pack is None or not length:
            return
        fd = self._open_pack(pack)
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def _batches(self, singles: list) -> list[tuple]:
        """(pack, first byte, bytes, files) runs: chunks in pack order, each run read with one pread
        (reading past at most BATCH_GAP bytes of chunks it does not need). Empty files (no chunk) form runs
        of their own that read nothing."""
        empty = [item for item in singles if not item[3]]
        located = sorted((item for item in singles if item[3]), key=lambda item: (item[3][0][1].pack, item[3][0][1].offset))
        runs: list[tuple] = [(None, 0, 0, empty[i:i + BATCH_FILES]) for i in range(0, len(empty), BATCH_FILES)]
        current: list = []
        start = end = 0
        for item in located:
            ref = item[3][0][1]
            if current and (ref.pack != current[0][3][0][1].pack or len(current) >= BATCH_FILES
                            or ref.offset - end > BATCH_GAP or ref.offset + ref.length - start > BATCH_BYTES):
                runs.append((current[0][3][0][1].pack, start, end - start, current))
                current = []
            if not current:
                start = end = ref.offset
            current.append(item)
            end = max(end, ref.offset + ref.length)  # a chunk two files share comes twice, read once
        if current:
            runs.append((current[0][3][0][1].pack, start, end - start, current))
        return runs

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self.local, "decompressor", None)
        if decompressor is None:
            decompressor = self.local.decompressor = zstandard.ZstdDecompressor()
        return decompressor

    def _open_pack(self, pack: str) -> int:
        try:
            return os.open(self.repo.pack_path(pack), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RepositoryError(f"{self.label}: pack {pack[:16]} is missing: the repository is damaged") from None

    def _read(self, pack: str, offset: int, length: int) -> bytes:
        """One pread; each read opens its pack, so however many packs a snapshot spans, few are open."""
        fd = self._open_pack(pack)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise RepositoryError(f"pack {pack[:16]} is truncated: {length} bytes at {offset} cut short")
        return data

    def _stage_batch(self, pack: str | None, start: int, length: int, items: list) -> list[tuple]:
        """In a pool thread: one read, then each file opened, checked against its SHA-256 and written."""
        blob = memoryview(self._read(pack, start, length)) if pack is not None else None
        decompressor = self._decompressor()
        done = []
        for name, member, target, refs in items:
            data = b""
            if refs:
                chunk_id, ref = refs[0]
                at = ref.offset - start
                data = open_chunk(self.repo.keys, chunk_id, blob[at:at + ref.length], ref.raw_length, decompressor)
            self._check(name, member, hashlib.sha256(data))
            done.append((name, target, _write_new(target, data)))
        return done

    def _decode(self, chunk_id: str, ref: BlobRef) -> bytes:
        stored = self._read(ref.pack, ref.offset, ref.length)
        return open_chunk(self.repo.keys, chunk_id, stored, ref.raw_length, self._decompressor())

    def _stage_chunked(self, pool, steps: deque, name: str, member: dict, target: Path, refs: list) -> None:
        steps.append(("open", name, member, target))
        for chunk_id, ref in refs:
            steps.append(("chunk", pool.submit(self._decode, chunk_id, ref)))
            self._drain(steps, STAGE_WINDOW)
        steps.append(("close",))

    def _drain(self, steps: deque, keep: int) -> None:
        """Steps completed in order until at most `keep` remain in flight."""
        while len(steps) > keep:
            step = steps.popleft()
            if step[0] == "batch":
                for name, target, identity in step[1].result():
                    self.verified.staged[name] = target
                    self.verified.identities[name] = identity
            elif step[0] == "open":
                _, name, member, target = step
                self.current = (name, member, target, hashlib.sha256())
                self.fd = os.open(target, _CREATE, 0o666)
            elif step[0] == "chunk":
                data = step[1].result()
                self.current[3].update(data)
                _write_all(self.fd, data)
            else:
                name, member, target, digest = self.current
                identity = file_identity(os.fstat(self.fd))
                fd, self.fd = self.fd, None
                os.close(fd)
                self._check(name, member, digest)
                self.verified.staged[name] = target
                self.verified.identities[name] = identity

    def _check(self, name: str, member: dict, digest) -> None:
        if not hmac.compare_digest(digest.hexdigest(), member["sha256"]):
            raise RepositoryError(f"{self.label}: member {name!r} does not match its checksum: the repository was altered")
