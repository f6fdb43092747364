"""Which files a process holds open, by (device, inode), so hygiene never deletes, compresses or
rotates a file a writer still appends to."""

from __future__ import annotations

import os
import stat as stat_mod
from pathlib import Path


def file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of a path without following a final symlink; None when it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def open_file_ids() -> set[tuple[int, int]] | None:
    """(device, inode) of every file a readable process holds open (Linux /proc); None when unknown.

    Identity by inode, not path: a file renamed after the snapshot (log rotation) is still known.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    held: set[tuple[int, int]] = set()
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        fd_dir = pid_dir / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(fd_dir / fd)
            except OSError:
                continue
            if stat_mod.S_ISREG(st.st_mode):
                held.add((st.st_dev, st.st_ino))
    return held


def is_held(path: str, held: set[tuple[int, int]] | None) -> bool:
    if not held:
        return False
    return file_id(path) in held
