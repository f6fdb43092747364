"""Temporary files and folders owned by the process writing them.

Each is held under an exclusive flock by its writer, so the next run removes exactly those whose
writer is gone (the kernel drops the lock of a killed process), never a live concurrent writer's.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trading_maintenance.core.backups.archive import PARTIAL_PREFIX

# Staging folders of earlier versions (tempfile.mkdtemp(prefix="restore-") or "drill-"), held no lock:
# they hold only copies of backup members, and one untouched for longer than any run may last
# belongs to a process that is gone.
LEGACY_STAGE_NAME = re.compile(r"^(restore|drill)-[a-z0-9_]{8}$")
LEGACY_STALE_SECONDS = 6 * 3600


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


def lock_held_path(fd: int, path: Path) -> bool:
    """Lock fd and confirm `path` still names the same file or folder (a cleaner may have removed it)."""
    if not _try_lock(fd):
        return False
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def unlink_if_same(path: Path, fd_ino: int | None) -> None:
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
        if lock_held_path(fd, path):
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
            if not lock_held_path(fd, path):
                continue
            if is_dir:
                shutil.rmtree(path)
            else:
                unlink_if_same(path, os.fstat(fd).st_ino)
            removed.append(str(path))
        finally:
            os.close(fd)
    return removed


def remove_legacy_stage_dirs(folder: str | Path, stale_seconds: float = LEGACY_STALE_SECONDS) -> list[str]:
    """Staging folders left by earlier versions: no live writer holds their lock and nothing in them
    changed for stale_seconds. Safety copies (restore-safety-*) never match: they may be all that is left."""
    removed: list[str] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    cutoff = time.time() - stale_seconds
    for entry in os.scandir(root):
        if not LEGACY_STAGE_NAME.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            if not lock_held_path(fd, path) or _newest_mtime(path) > cutoff:
                continue
            shutil.rmtree(path)
            removed.append(str(path))
        finally:
            os.close(fd)
    return removed


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                pass
    return newest
