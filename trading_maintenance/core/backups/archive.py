"""Backup archives: writing, reading with verification, naming, listing and retention.

An archive is a tar stream (PAX) compressed with zstd (default) or gzip, optionally sealed with
streamed AES-256-GCM (core/backup_crypto.py). Every member is a regular file; the last member,
MANIFEST.json, lists every other member with its size and SHA-256 plus the store versions, so a
reader verifies the whole archive before anything is restored. The archive is written under a
temporary name (".backup-<id>...partial"), fsynced, chmod 600 and only then published under its
final "backup-<id>..." name: an interrupted backup never leaves a file that looks like a backup.

Temporary files and folders are held under an exclusive flock by the process writing them, so the
next run removes exactly those whose writer is gone (the kernel drops the lock of a killed
process), never a live concurrent writer's.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import yaml
import zstandard

from trading_maintenance.core.backups.crypto import MAGIC, DecryptingReader, DecryptionError, EncryptingWriter

MANIFEST_NAME = "MANIFEST.json"
FORMATS = ("tar.zst", "tar.gz")
ID_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_RE = re.compile(r"^backup-(?P<id>\d{8}T\d{6}Z(?:-\d+)?)\.(?P<fmt>tar\.zst|tar\.gz)(?P<enc>\.enc)?$")
COPY_BUFSIZE = 1 << 20
MANIFEST_VERSION = 1
PARTIAL_PREFIX = ".backup-"
PARTIAL_SUFFIX = ".partial"
WORK_PREFIX = ".backup-work-"
# Kept free on the staging disk so a restore never fills it for the platform.
MIN_FREE_BYTES = 64 << 20
MAX_MANIFEST_BYTES = 64 << 20


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


def is_temporary_name(name: str) -> bool:
    """A backup's or restore's temporary file or folder: never a backup, never data."""
    return name.startswith((PARTIAL_PREFIX, WORK_PREFIX)) or name.endswith(PARTIAL_SUFFIX)


@dataclass
class VerifiedListing:
    refs: list[BackupRef]  # identified by their verified manifests, oldest first
    problems: list[str]  # archives that could not be verified or whose name disagrees with the manifest
    unreadable: list[str] = field(default_factory=list)  # names of the archives that could not be verified


def _manifest_identity(manifest: dict, name: str) -> tuple[str, datetime]:
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
            backup_id, created = _manifest_identity(verify_archive(ref.location, secret).manifest, ref.name)
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
# Key names that hold a secret wherever they appear, besides the settings' own SECRET_KEYS.
SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_key|apikey|private_key|encryption_key|webhook_url|credentials?)$",
                         re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.IGNORECASE)


class ConfigMaskError(ArchiveError):
    """The configuration file cannot be parsed, so it cannot be masked (and is not backed up as is)."""


def _secret_path(dotted: str, secret_keys: set[str]) -> bool:
    if dotted in secret_keys or any(dotted.startswith(k + ".") for k in secret_keys):
        return True
    return any(SECRET_NAME.search(part) for part in dotted.split("."))


def _mask_node(node: Any, dotted: str, secret_keys: set[str], masked: list[str], values: set) -> Any:
    """Mask secret paths; `values` collects the masked values (first pass) or, once filled, masks
    the same value wherever else it appears (an anchor or a copy under an innocent key)."""
    if isinstance(node, dict):
        return {key: _mask_node(value, f"{dotted}.{key}" if dotted else str(key), secret_keys, masked, values)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_mask_node(item, dotted, secret_keys, masked, values) for item in node]
    if node is None or node == "" or isinstance(node, bool):
        return node
    secret = _secret_path(dotted, secret_keys) or (isinstance(node, str) and URL_CREDENTIALS.match(node.strip()))
    if secret or (isinstance(node, str) and node in values):
        masked.append(dotted)
        if isinstance(node, str):
            values.add(node)
        return MASKED
    return node


def _parse_config(text: str, what: str) -> dict:
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigMaskError(f"{what} is not valid YAML{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigMaskError(f"{what} is not a YAML mapping")
    return document


def _dump_config(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


def mask_config_text(text: str, secret_keys: set[str]) -> tuple[str, list[str]]:
    """The configuration as valid YAML with every non-empty secret value replaced by a placeholder.

    Masking works on the parsed document, so flow style, block scalars, anchors and quoting cannot
    hide a value; a file that does not parse raises ConfigMaskError rather than being copied as is.
    Comments are not kept (YAML parsers drop them).
    """
    masked: list[str] = []
    values: set = set()
    document = _parse_config(text, "the configuration file")
    _mask_node(document, "", set(secret_keys), [], values)
    document = _mask_node(document, "", set(secret_keys), masked, values)
    return _dump_config(document), sorted(set(masked))


def _unmask_node(node: Any, current: Any) -> Any:
    if isinstance(node, dict):
        return {key: _unmask_node(value, current.get(key) if isinstance(current, dict) else None) for key, value in node.items()}
    if isinstance(node, list):
        return [_unmask_node(item, current[i] if isinstance(current, list) and i < len(current) else None)
                for i, item in enumerate(node)]
    if node == MASKED:
        return None if current == MASKED or isinstance(current, (dict, list)) else current
    return node


def unmask_config_text(backup_text: str, current_text: str) -> str:
    """A masked configuration with each masked secret taken from the current file (or left empty)."""
    document = _parse_config(backup_text, "the configuration in the backup")
    current = _parse_config(current_text, "the current configuration file") if current_text else {}
    return _dump_config(_unmask_node(document, current))


def same_config(text_a: str, text_b: str) -> bool:
    """Whether two configuration texts hold the same settings (formatting aside)."""
    try:
        return _parse_config(text_a, "a") == _parse_config(text_b, "b")
    except ConfigMaskError:
        return text_a == text_b


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
            if not _lock_held_path(fd, tmp) or (self.dest_dir / name).exists():
                # A cleaner removed it before the lock was taken, or a finished writer published
                # this id between the check and the create: take the next id.
                os.close(fd)
                _unlink_if_same(tmp, fd_ino=None)
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

    def __enter__(self) -> "ArchiveWriter":
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


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock_held_path(fd: int, path: Path) -> bool:
    """Lock fd and confirm `path` still names the same file or folder (a cleaner may have removed it)."""
    if not _try_lock(fd):
        return False
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _unlink_if_same(path: Path, fd_ino: int | None) -> None:
    try:
        if fd_ino is None or os.stat(path, follow_symlinks=False).st_ino == fd_ino:
            os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def owned_temp_dir(parent: str | Path, prefix: str) -> Iterator[Path]:
    """A private (0700) temporary folder locked by this process for as long as it is in use, then removed.

    remove_dead_temporaries() removes such a folder only once the process holding its lock is gone.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        if _lock_held_path(fd, path):
            break
        os.close(fd)
    try:
        os.chmod(path, 0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def remove_dead_temporaries(folder: str | Path, prefixes: tuple[str, ...] = (PARTIAL_PREFIX,)) -> list[str]:
    """Temporary files and folders (names starting with one of `prefixes`) whose writer has died.

    Each writer holds an exclusive flock on its temporary file or folder; the kernel releases it when
    the process ends, however it ends. A lock that can be taken means nobody writes there any more;
    a live writer's lock cannot be taken, so its files stay, however old they are.
    """
    removed: list[str] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for entry in os.scandir(root):
        if not entry.name.startswith(prefixes) or entry.is_symlink():
            continue
        path = Path(entry.path)
        is_dir = entry.is_dir(follow_symlinks=False)
        if not is_dir and not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if is_dir else 0) | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            if not _lock_held_path(fd, path):
                continue
            if is_dir:
                shutil.rmtree(path)
            else:
                _unlink_if_same(path, os.fstat(fd).st_ino)
            removed.append(str(path))
        finally:
            os.close(fd)
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


def _manifest_members(manifest: dict, name: str) -> dict[str, dict]:
    members = manifest.get("members") if isinstance(manifest, dict) else None
    if not isinstance(members, list):
        raise ArchiveError(f"{name}: manifest field 'members' is missing or not a list")
    listed: dict[str, dict] = {}
    for entry in members:
        ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str) and type(entry.get("size")) is int
              and entry["size"] >= 0 and isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
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
    listed = _manifest_members(manifest, name)
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


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(COPY_BUFSIZE):
            digest.update(chunk)
    return digest.hexdigest()

