"""Writing one archive: members streamed through tar, zstd or gzip and optional encryption.

The archive is written under a temporary name (".backup-<id>...partial") held under this writer's
lock, fsynced, chmod 600 and only then published under its final "backup-<id>..." name: an
interrupted backup never leaves a file that looks like a backup.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import zstandard

from trading_maintenance.core.backups.archive import COPY_BUFSIZE, MANIFEST_NAME, MANIFEST_VERSION, PARTIAL_SUFFIX, ArchiveError, archive_name
from trading_maintenance.core.backups.archive_reader import check_member_name
from trading_maintenance.core.backups.crypto import EncryptingWriter
from trading_maintenance.core.backups.temporaries import fsync_dir, lock_held_path, unlink_if_same

# --------------------------------------------------------------------------- writing


@dataclass
class MemberInfo:
    name: str
    size: int
    sha256: str
    kind: str
    source: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v != ""}


@dataclass
class ArchiveResult:
    backup_id: str
    path: str
    name: str
    size: int
    sha256: str
    uncompressed_bytes: int
    members: list[MemberInfo]
    manifest: dict
    seconds: float

    @property
    def compression_ratio(self) -> float:
        return round(self.uncompressed_bytes / self.size, 3) if self.size else 0.0


class _HashingSink:
    """Counts and hashes the final bytes on their way to disk."""

    def __init__(self, raw):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.count += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _ClampedHashingReader:
    """Reads exactly `size` bytes from a file being backed up, hashing them.

    A file that shrinks while it is read is padded with zeros (noted in the manifest); one that
    grows is cut at the size seen when it was opened. Either way the tar stream stays valid and the
    manifest's checksum is of the bytes actually archived.
    """

    def __init__(self, handle, size: int):
        self.handle = handle
        self.remaining = size
        self.hash = hashlib.sha256()
        self.short = False

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        n = self.remaining if n is None or n < 0 else min(n, self.remaining)
        data = self.handle.read(n)
        if len(data) < n:
            self.short = True
            data += b"\0" * (n - len(data))
        self.remaining -= len(data)
        self.hash.update(data)
        return data


class ArchiveWriter:
    """Write one archive member by member; `finish()` appends the manifest and publishes it atomically."""

    def __init__(
        self,
        dest_dir: str | Path,
        backup_id: str,
        fmt: str = "tar.zst",
        secret: str | None = None,
        level: int | None = None,
        threads: int = -1,
    ):
        self.dest_dir = Path(dest_dir)
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.encrypted = bool(secret)
        self.members: list[MemberInfo] = []
        self.uncompressed = 0
        self._started = time.monotonic()
        self.backup_id, self.tmp_path, fd = self._reserve(backup_id)
        self.name = archive_name(self.backup_id, fmt, self.encrypted)
        self.final_path = self.dest_dir / self.name
        self._raw = os.fdopen(fd, "wb", buffering=COPY_BUFSIZE)
        self._sink = _HashingSink(self._raw)
        self._encryptor = EncryptingWriter(self._sink, secret) if secret else None
        target = self._encryptor or self._sink
        if fmt == "tar.zst":
            cctx = zstandard.ZstdCompressor(level=level or 3, threads=threads, write_checksum=True)
            self._compressor = cctx.stream_writer(target, closefd=False)
        elif fmt == "tar.gz":
            self._compressor = gzip.GzipFile(fileobj=target, mode="wb", compresslevel=level or 6, mtime=0)
        else:
            raise ValueError(f"unknown backup format {fmt!r}")
        self._tar = tarfile.open(fileobj=self._compressor, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFSIZE)
        self._done = False

    def _reserve(self, base_id: str) -> tuple[str, Path, int]:
        """A backup id no other writer holds: its temporary file is created exclusively and locked.

        Two backups started in the same second get `<id>`, `<id>-1`, ... whatever the timing: the
        exclusive create decides, and an id whose final archive exists is never taken.
        """
        archive_name(base_id, self.fmt, self.encrypted)  # validates the format before any file exists
        for attempt in range(1000):
            candidate = base_id if attempt == 0 else f"{base_id}-{attempt}"
            name = archive_name(candidate, self.fmt, self.encrypted)
            if (self.dest_dir / name).exists():
                continue
            tmp = self.dest_dir / f".{name}{PARTIAL_SUFFIX}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            if not lock_held_path(fd, tmp) or (self.dest_dir / name).exists():
                # A cleaner removed it before the lock was taken, or a finished writer published
                # this id between the check and the create: take the next id.
                os.close(fd)
                unlink_if_same(tmp, fd_ino=None)
                continue
            return candidate, tmp, fd
        raise ArchiveError(f"no free backup id after {base_id} in {self.dest_dir}")

    def _tarinfo(self, name: str, size: int, mtime: float | None = None) -> tarfile.TarInfo:
        check_member_name(name)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(mtime if mtime is not None else time.time())
        return info

    def add_bytes(self, name: str, data: bytes, kind: str, source: str = "") -> MemberInfo:
        self._tar.addfile(self._tarinfo(name, len(data)), io.BytesIO(data))
        member = MemberInfo(name, len(data), hashlib.sha256(data).hexdigest(), kind, source)
        self.members.append(member)
        self.uncompressed += len(data)
        return member

    def add_file(self, name: str, path: str | Path, kind: str, source: str = "") -> MemberInfo:
        with open(path, "rb", buffering=0) as handle:
            st = os.fstat(handle.fileno())
            reader = _ClampedHashingReader(handle, st.st_size)
            self._tar.addfile(self._tarinfo(name, st.st_size, st.st_mtime), reader)
        note = "file shrank while being read; padded" if reader.short else ""
        member = MemberInfo(name, st.st_size, reader.hash.hexdigest(), kind, source, note)
        self.members.append(member)
        self.uncompressed += st.st_size
        return member

    def finish(self, manifest: dict) -> ArchiveResult:
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "backup_id": self.backup_id,
            "format": self.fmt,
            "encrypted": self.encrypted,
            **manifest,
            "members": [m.as_dict() for m in self.members],
        }
        data = json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()
        self._tar.addfile(self._tarinfo(MANIFEST_NAME, len(data)), io.BytesIO(data))
        self.uncompressed += len(data)
        self._tar.close()
        self._compressor.close()
        if self._encryptor is not None:
            self._encryptor.close()
        self._raw.flush()
        os.fchmod(self._raw.fileno(), 0o600)
        os.fsync(self._raw.fileno())
        try:
            _publish_exclusive(self.tmp_path, self.final_path)  # still under this writer's lock
        finally:
            self._raw.close()
        self._done = True
        return ArchiveResult(
            self.backup_id,
            str(self.final_path),
            self.name,
            self._sink.count,
            self._sink.hash.hexdigest(),
            self.uncompressed,
            list(self.members),
            manifest,
            time.monotonic() - self._started,
        )

    def abort(self) -> None:
        if self._done:
            return
        self.tmp_path.unlink(missing_ok=True)  # before closing: the lock still marks it as ours
        for closer in (self._tar.close, self._compressor.close, self._raw.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort; the file is already gone
                pass
        self._done = True

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _publish_exclusive(tmp: Path, final: Path) -> None:
    """Give the finished temporary file its final name, failing rather than replacing an archive."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise ArchiveError(f"{final.name} already exists: the new archive was not published over it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        if final.exists():  # no hard links on this file system: reserved id, so this is the last guard
            raise ArchiveError(f"{final.name} already exists: the new archive was not published over it") from None
        os.rename(tmp, final)
    else:
        os.unlink(tmp)
    fsync_dir(final.parent)
