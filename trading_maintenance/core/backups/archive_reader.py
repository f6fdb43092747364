"""Reading an archive: every member checked against the manifest before anything is staged."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import zstandard

from trading_maintenance.core.backups.archive import (
    COPY_BUFSIZE,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MIN_FREE_BYTES,
    ArchiveError,
    BackupRef,
    list_local_backups,
    parse_archive_name,
)
from trading_maintenance.core.backups.crypto import MAGIC, DecryptingReader, DecryptionError


@dataclass
class VerifiedListing:
    refs: list[BackupRef]  # identified by their verified manifests, oldest first
    problems: list[str]  # archives that could not be verified or whose name disagrees with the manifest
    unreadable: list[str] = field(default_factory=list)  # names of the archives that could not be verified


def manifest_identity(manifest: dict, name: str) -> tuple[str, datetime]:
    backup_id = manifest.get("backup_id")
    if not isinstance(backup_id, str) or not re.fullmatch(r"\d{8}T\d{6}Z(?:-\d+)?", backup_id):
        raise ArchiveError(f"{name}: manifest field 'backup_id' is missing or malformed")
    try:
        created = datetime.fromisoformat(str(manifest.get("created_at")))
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise ArchiveError(f"{name}: manifest field 'created_at' is missing or not a time with a zone")
    return backup_id, created.astimezone(timezone.utc)


def identify_local_backups(backups_dir: str | Path, secret: str | None) -> VerifiedListing:
    """Every final archive in backups_dir identified and ordered by its verified manifest.

    A file name is only a label: a copy or rename must not become "latest" or escape retention. An
    archive that cannot be verified is left out (and reported), never ordered by its name.
    """
    refs, problems, unreadable = [], [], []
    for ref in list_local_backups(backups_dir):
        try:
            backup_id, created = manifest_identity(verify_archive(ref.location, secret).manifest, ref.name)
        except ArchiveError as exc:
            problems.append(f"{ref.name}: left out, cannot be verified: {exc}")
            unreadable.append(ref.name)
            continue
        if backup_id != ref.backup_id:
            problems.append(f"{ref.name}: the file name says backup {ref.backup_id} but its manifest says backup "
                            f"{backup_id} created {created.isoformat()}; it is identified and ordered by its manifest")
        refs.append(replace(ref, backup_id=backup_id, created_at=created))
    refs.sort(key=lambda r: (r.created_at, parse_archive_name(r.name)[0] == r.backup_id, r.name))
    return VerifiedListing(refs, problems, unreadable)


# --------------------------------------------------------------------------- reading and verifying


def check_member_name(name: str) -> str:
    """Refuse names that could land outside the extraction target ("tar slip")."""
    if not name or "\\" in name or "\0" in name:
        raise ArchiveError(f"unsafe member name {name!r} in archive: refused (possible tar slip)")
    # an empty part (leading, trailing or doubled "/") or a ".." part, without splitting the name
    if (name.startswith(("/", "./", "../")) or name.endswith(("/", "/..")) or "//" in name or "/../" in name
            or name == ".."):
        raise ArchiveError(f"unsafe member path {name!r} would land outside its target: refused (tar slip)")
    return name


class _Prefixed:
    """A reader that first returns bytes already peeked from `inner`."""

    def __init__(self, head: bytes, inner):
        self.head = head
        self.inner = inner

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.inner.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.inner.read(n - len(data))
            return data
        return self.inner.read(n)

    def readable(self) -> bool:
        return True


@contextmanager
def open_archive_stream(path: str | Path, secret: str | None = None):
    """The archive as a streaming TarFile (decrypting and decompressing on the fly)."""
    path = Path(path)
    name = path.name
    with open(path, "rb", buffering=COPY_BUFSIZE) as raw:
        encrypted = raw.read(len(MAGIC)) == MAGIC
        raw.seek(0)
        source = raw
        if encrypted:
            if not secret:
                raise ArchiveError(f"{name} is encrypted: set BACKUP_ENCRYPTION_KEY (or backup.encryption_key) to restore it")
            try:
                source = DecryptingReader(raw, secret)
            except DecryptionError as exc:
                raise ArchiveError(f"{name}: {exc}") from None
        head = source.read(4)
        if head[:4] == b"\x28\xb5\x2f\xfd":
            fmt = "tar.zst"
        elif head[:2] == b"\x1f\x8b":
            fmt = "tar.gz"
        else:
            raise ArchiveError(f"{name}: not a backup archive (unknown compression or empty file)")
        source = _Prefixed(head, source)
        if fmt == "tar.zst":
            decompressed = zstandard.ZstdDecompressor().stream_reader(source, read_size=COPY_BUFSIZE, read_across_frames=True)
        else:
            decompressed = gzip.GzipFile(fileobj=source, mode="rb")
        tar = tarfile.open(fileobj=decompressed, mode="r|", copybufsize=COPY_BUFSIZE)
        try:
            yield tar
        finally:
            tar.close()


@dataclass
class VerifiedArchive:
    path: str
    manifest: dict
    staged: dict[str, Path] = field(default_factory=dict)  # member name -> staged file
    bytes_read: int = 0
    # member name -> (device, inode, size, mtime_ns, ctime_ns) of its staged file once verified: a file
    # renamed into place with the same identity is the verified one, without reading it again
    identities: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)

    def members(self, kind: str | None = None) -> list[dict]:
        return [m for m in self.manifest.get("members", []) if kind is None or m.get("kind") == kind]


def copy_bounded(source, out, limit: int, what: str) -> tuple[int, str]:
    """Copy at most `limit` bytes; one byte more and the copy stops with an error. (bytes, sha256)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = source.read(min(COPY_BUFSIZE, limit - size + 1))
        if not chunk:
            return size, digest.hexdigest()
        size += len(chunk)
        if size > limit:
            raise ArchiveError(f"{what} is larger than the {limit} bytes its manifest declares: refused, writing stopped")
        digest.update(chunk)
        if out is not None:
            out.write(chunk)


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def manifest_members(manifest: dict, name: str) -> dict[str, dict]:
    members = manifest.get("members") if isinstance(manifest, dict) else None
    if not isinstance(members, list):
        raise ArchiveError(f"{name}: manifest field 'members' is missing or not a list")
    listed: dict[str, dict] = {}
    for entry in members:
        ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str) and type(entry.get("size")) is int
              and entry["size"] >= 0 and isinstance(entry.get("sha256"), str) and _SHA256_HEX.fullmatch(entry["sha256"])
              and isinstance(entry.get("kind"), str))
        if not ok:
            raise ArchiveError(f"{name}: manifest entry {str(entry)[:120]!r} lacks a valid name, size, sha256 or kind")
        if entry["name"] in listed:
            raise ArchiveError(f"{name}: manifest lists {entry['name']!r} twice: refused")
        listed[entry["name"]] = entry
    return listed


STREAM_ERRORS = (tarfile.TarError, zstandard.ZstdError, EOFError, OSError, gzip.BadGzipFile)


def _scan_archive(path: str | Path, secret: str | None, accept: Callable[[str], None] | None) -> tuple[dict, dict, int]:
    """Pass one: read the whole archive writing nothing; (manifest, {member: (size, sha256)}, bytes)."""
    name = Path(path).name
    seen: dict[str, tuple[int, str]] = {}
    manifest: dict | None = None
    total = 0
    try:
        with open_archive_stream(path, secret) as tar:
            for info in tar:
                if manifest is not None:
                    raise ArchiveError(f"{name}: member {info.name!r} after the manifest: refused")
                check_member_name(info.name)
                if not info.isreg():
                    raise ArchiveError(f"{name}: member {info.name!r} is not a regular file (link or device): refused")
                if info.name in seen:
                    raise ArchiveError(f"{name}: member {info.name!r} appears twice: refused")
                handle = tar.extractfile(info)
                if info.name == MANIFEST_NAME:
                    buffer = io.BytesIO()
                    copy_bounded(handle, buffer, min(info.size, MAX_MANIFEST_BYTES), f"{name}: {MANIFEST_NAME}")
                    try:
                        manifest = json.loads(buffer.getvalue())
                    except ValueError:
                        raise ArchiveError(f"{name}: manifest is not valid JSON: archive corrupt") from None
                    continue
                if accept is not None:
                    accept(info.name)
                seen[info.name] = copy_bounded(handle, None, info.size, info.name)
                total += info.size
    except ArchiveError:
        raise
    except DecryptionError as exc:
        raise ArchiveError(f"{name}: {exc}") from None
    except STREAM_ERRORS as exc:
        raise ArchiveError(f"{name}: archive is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if manifest is None:
        raise ArchiveError(f"{name}: no manifest found: the archive is truncated or incomplete")
    return manifest, seen, total


def verify_archive(
    path: str | Path,
    secret: str | None = None,
    stage_dir: str | Path | None = None,
    want: Callable[[str], bool] | None = None,
    accept: Callable[[str], None] | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> VerifiedArchive:
    """Check every member against the manifest; then optionally stage the members `want` selects.

    Pass one reads the whole archive and writes nothing: names (`accept` raises ArchiveError for a
    member the caller does not allow), types, sizes and checksums against the manifest. Only a fully
    verified archive is read again to stage members under stage_dir (a private folder the caller
    owns), after checking their declared sizes fit its free space; each member is written up to its
    declared size and no further, and checked again. Raises ArchiveError naming the problem.
    """
    name = Path(path).name
    manifest, seen, total = _scan_archive(path, secret, accept)
    listed = manifest_members(manifest, name)
    for member_name, member in listed.items():
        if member_name not in seen:
            raise ArchiveError(f"{name}: member {member_name!r} listed in the manifest is missing: archive truncated or altered")
        if seen[member_name] != (member["size"], member["sha256"]):
            raise ArchiveError(f"{name}: checksum mismatch for {member_name!r}: the archive was altered or corrupted")
    extra = sorted(set(seen) - set(listed))
    if extra:
        raise ArchiveError(f"{name}: members not in the manifest: {extra[:5]}: refused")
    verified = VerifiedArchive(str(path), manifest, {}, total)
    if stage_dir is None:
        return verified
    wanted = {n: m for n, m in listed.items() if want is None or want(n)}
    if wanted:
        verified.staged = _stage_members(path, secret, Path(stage_dir), wanted, min_free_bytes)
    return verified


def _stage_members(path, secret, stage_root: Path, wanted: dict[str, dict], min_free_bytes: int) -> dict[str, Path]:
    name = Path(path).name
    stage_root.mkdir(parents=True, exist_ok=True)
    need = sum(m["size"] for m in wanted.values())
    free = shutil.disk_usage(stage_root).free
    if need + min_free_bytes > free:
        raise ArchiveError(f"{name}: staging needs {need} bytes plus {min_free_bytes} kept free in {stage_root}, "
                           f"only {free} are free: refused before writing")
    staged: dict[str, Path] = {}
    try:
        with open_archive_stream(path, secret) as tar:
            for info in tar:
                member = wanted.get(info.name)
                if member is None or info.name in staged:
                    continue
                check_member_name(info.name)
                if not info.isreg() or info.size != member["size"]:
                    raise ArchiveError(f"{name}: member {info.name!r} changed since it was verified: refused")
                target = stage_root / info.name
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                staged[info.name] = target
                with open(target, "xb") as out:
                    got = copy_bounded(tar.extractfile(info), out, member["size"], f"{name}: member {info.name!r}")
                if got != (member["size"], member["sha256"]):
                    raise ArchiveError(f"{name}: member {info.name!r} changed since it was verified: refused")
    except ArchiveError:
        raise
    except DecryptionError as exc:
        raise ArchiveError(f"{name}: {exc}") from None
    except STREAM_ERRORS as exc:
        raise ArchiveError(f"{name}: archive is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    missing = sorted(set(wanted) - set(staged))
    if missing:
        raise ArchiveError(f"{name}: members {missing[:5]} vanished since the archive was verified: refused")
    return staged


def file_identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file is replaced or written to: (device, inode, size, mtime_ns, ctime_ns)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(COPY_BUFSIZE):
            digest.update(chunk)
    return digest.hexdigest()
