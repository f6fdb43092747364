"""Writing files so a crash never leaves a half-written one under the real name:
temporary name in the same folder, fsync, rename, fsync the folder.

Every temporary this project writes is named `.<final name>.<pid>@<host>.<token>.tmp`
(`temporary_name_for`): other tasks recognise it as temporary by its `.tmp` suffix and never read
it as data, and the writer's next run removes the ones whose process is gone
(`remove_dead_temporaries`). A temporary of a process still running, or of another host sharing
the folder, is never removed.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import shutil
import socket
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")
_TEMPORARY_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<pid>\d{1,10})@(?P<host>[A-Za-z0-9.-]{1,64})\.(?P<token>[0-9a-f]{8})" + re.escape(TEMPORARY_SUFFIX) + "$"
)
# A process that started this long after its temporary last changed cannot be its writer: the
# process id was reused.
_PID_REUSE_MARGIN_SECONDS = 2.0


def fsync_dir(path: str | Path) -> None:
    """Make a rename or unlink in this folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def host_label() -> str:
    """This host's name as it appears in temporary names (file-name safe, at most 64 characters)."""
    return _HOST_UNSAFE.sub("-", socket.gethostname() or "localhost")[:64] or "localhost"


def temporary_name_for(path: str | Path) -> Path:
    """A fresh temporary path beside `path` carrying this process's id and host."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}@{host_label()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


@dataclass(frozen=True)
class TemporaryName:
    target: str  # the final name the writer was producing
    pid: int
    host: str


def parse_temporary_name(name: str) -> TemporaryName | None:
    """The writer of a temporary named by `temporary_name_for`, or None for any other name."""
    match = _TEMPORARY_NAME.match(name)
    if not match:
        return None
    return TemporaryName(match["target"], int(match["pid"]), match["host"])


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _process_start_time(pid: int) -> float | None:
    """When a process started (epoch seconds, Linux /proc), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def dead_temporary_reason(path: str | Path) -> str | None:
    """Why a temporary of this project is abandoned (its process is gone), or None: not one of ours,
    written on another host, or its writer may still be running."""
    path = Path(path)
    writer = parse_temporary_name(path.name)
    if writer is None or writer.host != host_label():
        return None
    if not process_alive(writer.pid):
        return f"temporary of process {writer.pid}, which is gone"
    started = _process_start_time(writer.pid)
    try:
        # the change time, not the modification time: a writer may give its temporary an old mtime
        # (gzip keeps the original's), but the change time is never earlier than the file's creation
        changed = os.lstat(path).st_ctime
    except OSError:
        return None
    if started is not None and started > changed + _PID_REUSE_MARGIN_SECONDS:
        return f"temporary of process {writer.pid}, which is gone (that id now belongs to a newer process)"
    return None


@dataclass
class TemporarySweep:
    removed: list[tuple[Path, str]] = field(default_factory=list)  # (path, why it was abandoned)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def remove_dead_temporaries(folder: str | Path, pattern: str = "*", dry_run: bool = False) -> TemporarySweep:
    """Remove this project's temporaries in `folder` (not below it) whose final name matches the
    glob `pattern` and whose writer is gone; a dry run only lists them."""
    sweep = TemporarySweep()
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return sweep
    for entry in entries:
        writer = parse_temporary_name(entry.name)
        if writer is None or not fnmatch.fnmatchcase(writer.target, pattern):
            continue
        reason = dead_temporary_reason(entry.path)
        if reason is None:
            continue
        path = Path(entry.path)
        try:
            if not stat_mod.S_ISREG(os.lstat(path).st_mode):
                continue  # a symlink or folder under a temporary's name is not ours to remove
            if not dry_run:
                path.unlink()
            sweep.removed.append((path, reason))
        except FileNotFoundError:
            continue
        except OSError as exc:
            sweep.failed.append((path, f"{type(exc).__name__}: {exc.strerror}"))
    return sweep


def _atomic(path: str | Path, write: Callable[[BinaryIO], None], mode: int | None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path.parent)
    tmp = temporary_name_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically; dead temporaries of earlier writers in the folder are removed first."""
    return _atomic(path, lambda handle: handle.write(data), mode)


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_copy(src: str | Path, target: str | Path, mode: int | None = None) -> Path:
    """Copy src over target, streamed, so target is always either the old or the complete new file."""
    def copy(handle: BinaryIO) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, handle, 1 << 20)

    return _atomic(target, copy, mode)
