"""Gzipping a kept file without ever losing it, and recognising the temporaries a crashed gzip left.

The compressed copy is written under a temporary name (core.common.atomic.temporary_name_for:
process id and host in the name), fsynced, read back and compared, then renamed into place; the
original goes only when it did not change meanwhile and nobody holds it open. Data cleanup, log
rotation and resource optimization all compress with `gzip_file`, so each of them removes the
gzip temporaries whose process is gone (`dead_gzip_temporary`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import stat as stat_mod
from dataclasses import asdict, dataclass

from trading_maintenance.core.common.atomic import dead_temporary_reason, fsync_dir, parse_temporary_name, process_alive, temporary_name_for
from trading_maintenance.core.hygiene.file_names import is_temporary_name

# Names earlier versions gave gzip temporaries: `.x.gz.tmp` (no process id) and `.x.gz.<pid>.tmp`.
_LEGACY_GZIP_TEMP = re.compile(r"^\.(?P<name>.+)\.gz(?:\.(?P<pid>\d+))?\.tmp$")


def dead_gzip_temporary(path: str) -> str | None:
    """Why a gzip temporary is abandoned, or None when it is not one or its writer may still run."""
    name = os.path.basename(path)
    writer = parse_temporary_name(name)
    if writer is not None:
        return dead_temporary_reason(path) if writer.target.endswith(".gz") else None
    legacy = _LEGACY_GZIP_TEMP.match(name)
    if not legacy:
        return None
    if legacy["pid"] is None:
        return "gzip temporary without a process id (left by an earlier version)"
    if process_alive(int(legacy["pid"])):
        return None
    return f"gzip temporary of process {legacy['pid']}, which is gone"


@dataclass
class GzipResult:
    path: str
    ok: bool
    target: str = ""
    bytes_before: int = 0
    bytes_after: int = 0
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def gzip_file(path: str, expected_mtime: float | None = None, open_ids: set[tuple[int, int]] | None = None) -> GzipResult:
    """Gzip `path` to `path.gz` safely; the original is removed only when all checks pass.

    Written to a temporary name, fsynced, read back and compared (SHA-256 of the content), given the
    original's mtime, renamed into place; the original is deleted only if it did not change while
    being compressed and no process holds it open.
    """
    target = path + ".gz"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return GzipResult(path, False, reason="gone before compression")
    if not stat_mod.S_ISREG(st.st_mode):
        return GzipResult(path, False, reason="not a regular file")
    if is_temporary_name(os.path.basename(path)):
        return GzipResult(path, False, reason="temporary file of a writer; never compressed")
    if expected_mtime is not None and st.st_mtime != expected_mtime:
        return GzipResult(path, False, reason="modified since planning; kept")
    if open_ids and (st.st_dev, st.st_ino) in open_ids:
        return GzipResult(path, False, reason="held open by a process; kept uncompressed")
    if os.path.lexists(target):
        return GzipResult(path, False, reason=f"{os.path.basename(target)} already exists; kept")
    folder, name = os.path.split(path)
    tmp = str(temporary_name_for(target))
    source_digest = hashlib.sha256()
    try:
        with open(path, "rb") as src, open(tmp, "xb") as raw:
            with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=int(st.st_mtime)) as gz:
                while block := src.read(1 << 20):
                    source_digest.update(block)
                    gz.write(block)
            raw.flush()
            os.fsync(raw.fileno())
        after = os.lstat(path)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            os.unlink(tmp)
            return GzipResult(path, False, reason="changed while compressing; kept uncompressed")
        check = hashlib.sha256()
        with gzip.open(tmp, "rb") as back:
            while block := back.read(1 << 20):
                check.update(block)
        if check.hexdigest() != source_digest.hexdigest():
            os.unlink(tmp)
            return GzipResult(path, False, reason="compressed copy did not read back identical; kept")
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.path.lexists(target):
            os.unlink(tmp)
            return GzipResult(path, False, reason="target appeared meanwhile; kept")
        os.rename(tmp, target)
        fsync_dir(folder)
        final = os.lstat(path)
        if (final.st_size, final.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            os.unlink(target)
            return GzipResult(path, False, reason="changed while compressing; kept uncompressed")
        os.unlink(path)
        fsync_dir(folder)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return GzipResult(path, False, reason=f"{type(exc).__name__}: {exc.strerror}")
    return GzipResult(path, True, target, st.st_size, os.lstat(target).st_size)
