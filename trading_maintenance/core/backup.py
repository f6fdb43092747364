"""Backup archives: writing, reading with verification, naming, listing and retention.

An archive is a tar stream (PAX) compressed with zstd (default) or gzip, optionally sealed with
streamed AES-256-GCM (core/backup_crypto.py). Every member is a regular file; the last member,
MANIFEST.json, lists every other member with its size and SHA-256 plus the store versions, so a
reader verifies the whole archive before anything is restored. The archive is written under a
temporary name (".backup-...partial"), fsynced, chmod 600 and only then renamed to its final
"backup-<id>..." name: an interrupted backup never leaves a file that looks like a backup.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import zstandard

from trading_maintenance.core.backup_crypto import MAGIC, DecryptingReader, DecryptionError, EncryptingWriter

MANIFEST_NAME = "MANIFEST.json"
FORMATS = ("tar.zst", "tar.gz")
ID_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_RE = re.compile(r"^backup-(?P<id>\d{8}T\d{6}Z(?:-\d+)?)\.(?P<fmt>tar\.zst|tar\.gz)(?P<enc>\.enc)?$")
COPY_BUFSIZE = 1 << 20
MANIFEST_VERSION = 1


class ArchiveError(ValueError):
    """The archive cannot be trusted or used; the message says why and is safe to show."""


# --------------------------------------------------------------------------- names and listing


@dataclass(frozen=True)
class BackupRef:
    backup_id: str
    name: str
    created_at: datetime
    size: int = 0
    location: str = ""  # local path or s3://bucket/key
    encrypted: bool = False
    fmt: str = "tar.zst"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def new_backup_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(ID_FORMAT)


def archive_name(backup_id: str, fmt: str, encrypted: bool) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown backup format {fmt!r}; expected one of {FORMATS}")
    return f"backup-{backup_id}.{fmt}" + (".enc" if encrypted else "")


def parse_archive_name(name: str) -> tuple[str, datetime, str, bool] | None:
    """(id, created_at UTC, format, encrypted) for a final archive name; None for anything else."""
    match = NAME_RE.match(name)
    if not match:
        return None
    created = datetime.strptime(match["id"].split("-")[0], ID_FORMAT).replace(tzinfo=timezone.utc)
    return match["id"], created, match["fmt"], bool(match["enc"])


def list_local_backups(backups_dir: str | Path) -> list[BackupRef]:
    """Final archives in backups_dir, oldest first (temporary and foreign files are ignored)."""
    root = Path(backups_dir)
    refs = []
    if not root.is_dir():
        return refs
    for entry in os.scandir(root):
        if not entry.is_file(follow_symlinks=False):
            continue
        parsed = parse_archive_name(entry.name)
        if parsed is None:
            continue
        backup_id, created, fmt, enc = parsed
        refs.append(BackupRef(backup_id, entry.name, created, entry.stat().st_size, entry.path, enc, fmt))
    return sorted(refs, key=lambda r: (r.created_at, r.backup_id))


def select_backup(refs: list[BackupRef], which: str = "latest", on_date: str | None = None, tz: str = "America/New_York") -> BackupRef:
    """`latest`, an id (or unique id prefix); `on_date` (YYYY-MM-DD, in tz) narrows to that day's backups."""
    from zoneinfo import ZoneInfo

    candidates = refs
    if on_date:
        day = datetime.fromisoformat(on_date).date()
        candidates = [r for r in refs if r.created_at.astimezone(ZoneInfo(tz)).date() == day]
        if not candidates:
            raise ArchiveError(f"no backup was made on {on_date} ({tz})")
    if not candidates:
        raise ArchiveError("no backups found")
    if which in ("", "latest"):
        return candidates[-1]
    matches = [r for r in candidates if r.backup_id == which or r.name == which]
    if not matches:
        matches = [r for r in candidates if r.backup_id.startswith(which)]
    if len(matches) != 1:
        raise ArchiveError(f"backup {which!r} {'is ambiguous' if matches else 'not found'}")
    return matches[0]


# --------------------------------------------------------------------------- retention


@dataclass
class RetentionPlan:
    cutoff: datetime
    keep: list[BackupRef] = field(default_factory=list)
    delete: list[BackupRef] = field(default_factory=list)


def plan_backup_retention(refs: list[BackupRef], retention_days: int, now: datetime, protect: set[str] = frozenset()) -> RetentionPlan:
    """Backups created strictly before now - retention_days expire; one exactly at the cutoff stays.

    The newest backup and any id in `protect` (the one just verified) are always kept, so retention
    can never leave zero backups.
    """
    cutoff = now - timedelta(days=retention_days)
    plan = RetentionPlan(cutoff)
    newest = max(refs, key=lambda r: (r.created_at, r.backup_id)) if refs else None
    for ref in sorted(refs, key=lambda r: (r.created_at, r.backup_id)):
        if ref.created_at < cutoff and ref is not newest and ref.backup_id not in protect:
            plan.delete.append(ref)
        else:
            plan.keep.append(ref)
    return plan


# --------------------------------------------------------------------------- configuration masking

MASKED = "***masked-in-backup***"


def _yaml_paths(text: str) -> Iterator[tuple[int, str, re.Match]]:
    """(line index, dotted key, match) for each `key: value` line of a block-style YAML mapping."""
    stack: list[tuple[int, str]] = []
    pattern = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_]+):(?P<sep>\s*)(?P<value>[^#\n]*?)(?P<rest>\s*(#.*)?)$")
    for index, line in enumerate(text.splitlines()):
        match = pattern.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [match["key"]])
        yield index, dotted, match
        if not match["value"].strip():
            stack.append((indent, match["key"]))


def mask_config_text(text: str, secret_keys: set[str]) -> tuple[str, list[str]]:
    """The YAML text with every non-empty secret value replaced by a placeholder (comments kept)."""
    lines = text.splitlines()
    masked = []
    for index, dotted, match in _yaml_paths(text):
        if dotted in secret_keys and match["value"].strip() not in ("", "null", "~", '""', "''"):
            lines[index] = f"{match['indent']}{match['key']}:{match['sep'] or ' '}\"{MASKED}\"{match['rest']}"
            masked.append(dotted)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else ""), masked


def unmask_config_text(backup_text: str, current_text: str) -> str:
    """Restore a masked config: each masked secret takes the current file's value (or stays empty)."""
    current = {dotted: m["value"] for _, dotted, m in _yaml_paths(current_text)} if current_text else {}
    lines = backup_text.splitlines()
    for index, dotted, match in _yaml_paths(backup_text):
        if MASKED in match["value"]:
            value = current.get(dotted, "")
            if MASKED in value:
                value = ""
            lines[index] = f"{match['indent']}{match['key']}:{' ' + value if value else ''}{match['rest']}"
    return "\n".join(lines) + ("\n" if backup_text.endswith("\n") else "")


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
        self.backup_id = backup_id
        self.fmt = fmt
        self.encrypted = bool(secret)
        self.name = archive_name(backup_id, fmt, self.encrypted)
        self.final_path = self.dest_dir / self.name
        if self.final_path.exists():
            raise ArchiveError(f"{self.final_path} already exists")
        self.tmp_path = self.dest_dir / f".{self.name}.{os.getpid()}.partial"
        self.members: list[MemberInfo] = []
        self.uncompressed = 0
        self._started = time.monotonic()
        fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.chmod(self.tmp_path, 0o600)
        os.rename(self.tmp_path, self.final_path)
        dir_fd = os.open(self.dest_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
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
        for closer in (self._tar.close, self._compressor.close, self._raw.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort; the temp file is removed below
                pass
        self.tmp_path.unlink(missing_ok=True)
        self._done = True

    def __enter__(self) -> "ArchiveWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def remove_stale_partials(backups_dir: str | Path, older_than_seconds: float = 6 * 3600, now: float | None = None) -> list[str]:
    """Temporary files left by a killed backup (never valid archives) are removed once old enough."""
    now = now or time.time()
    removed = []
    root = Path(backups_dir)
    if not root.is_dir():
        return removed
    for entry in os.scandir(root):
        if entry.name.startswith(".backup-") and entry.name.endswith(".partial") and entry.is_file(follow_symlinks=False):
            if now - entry.stat().st_mtime > older_than_seconds:
                os.unlink(entry.path)
                removed.append(entry.path)
    return removed


# --------------------------------------------------------------------------- reading and verifying


def check_member_name(name: str) -> str:
    """Refuse names that could land outside the extraction target ("tar slip")."""
    if not name or "\\" in name or "\0" in name:
        raise ArchiveError(f"unsafe member name {name!r} in archive: refused (possible tar slip)")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in name.split("/")) or name.startswith("./"):
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

    def members(self, kind: str | None = None) -> list[dict]:
        return [m for m in self.manifest.get("members", []) if kind is None or m.get("kind") == kind]


def verify_archive(
    path: str | Path,
    secret: str | None = None,
    stage_dir: str | Path | None = None,
    want: Callable[[str], bool] | None = None,
) -> VerifiedArchive:
    """Read the whole archive, check every member against the manifest; optionally stage members.

    Members for which `want(name)` is true are written under stage_dir (a private folder the caller
    owns). Raises ArchiveError naming the problem: wrong key, altered or truncated archive, missing
    manifest, a checksum or size mismatch, an unexpected or unsafe member. On error nothing outside
    stage_dir has been touched.
    """
    name = Path(path).name
    seen: dict[str, tuple[int, str]] = {}
    manifest: dict | None = None
    staged: dict[str, Path] = {}
    total = 0
    stage_root = Path(stage_dir) if stage_dir else None
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
                digest = hashlib.sha256()
                size = 0
                if info.name == MANIFEST_NAME:
                    data = handle.read()
                    try:
                        manifest = json.loads(data)
                    except ValueError:
                        raise ArchiveError(f"{name}: manifest is not valid JSON: archive corrupt") from None
                    continue
                out = None
                if stage_root is not None and (want is None or want(info.name)):
                    target = stage_root / info.name
                    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    out = open(target, "wb")
                    staged[info.name] = target
                try:
                    while True:
                        chunk = handle.read(COPY_BUFSIZE)
                        if not chunk:
                            break
                        digest.update(chunk)
                        size += len(chunk)
                        if out is not None:
                            out.write(chunk)
                finally:
                    if out is not None:
                        out.close()
                seen[info.name] = (size, digest.hexdigest())
                total += size
    except ArchiveError:
        raise
    except DecryptionError as exc:
        raise ArchiveError(f"{name}: {exc}") from None
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"{name}: archive is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if manifest is None:
        raise ArchiveError(f"{name}: no manifest found: the archive is truncated or incomplete")
    listed = {m["name"]: m for m in manifest.get("members", [])}
    for member_name, member in listed.items():
        if member_name not in seen:
            raise ArchiveError(f"{name}: member {member_name!r} listed in the manifest is missing: archive truncated or altered")
        size, sha = seen[member_name]
        if size != member["size"] or sha != member["sha256"]:
            raise ArchiveError(f"{name}: checksum mismatch for {member_name!r}: the archive was altered or corrupted")
    extra = sorted(set(seen) - set(listed))
    if extra:
        raise ArchiveError(f"{name}: members not in the manifest: {extra[:5]}: refused")
    return VerifiedArchive(str(path), manifest, staged, total)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(COPY_BUFSIZE):
            digest.update(chunk)
    return digest.hexdigest()


def safe_rmtree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
