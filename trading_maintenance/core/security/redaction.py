"""Redaction of rotated logs: the listed secrets masked in a rewritten copy that replaces the file.

The copy is written under a temporary name that carries the writer's process id
(`.app.log.1.redact.<pid>.tmp`), fsynced, verified (same stream apart from the masks, none of the
masked values left, original unchanged meanwhile) and renamed over the original. A crash leaves
only the temporary, which the next audit removes once its process is gone.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trading_maintenance.core.common.atomic import process_alive
from trading_maintenance.core.security.findings import fingerprint, mask
from trading_maintenance.core.security.reading import BLOCK_SIZE, Piece, raw_blocks
from trading_maintenance.core.security.scan import SecretScanner
from trading_maintenance.core.security.targets import is_rotated

_REDACTION_TEMP = re.compile(r"^\.(?P<name>.+)\.redact(?:\.(?P<pid>\d+))?\.tmp$")
# A temporary of an earlier version names no process: it is left alone until surely abandoned.
UNNAMED_TEMP_STALE_SECONDS = 24 * 3600


@dataclass
class RedactionResult:
    path: str
    secrets_masked: int = 0
    done: bool = False
    dry_run: bool = True
    error: str = ""


@dataclass(frozen=True)
class StaleTemporary:
    path: str
    reason: str
    removed: bool = False
    error: str = ""


def redaction_temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.redact.{os.getpid()}.tmp")


def stale_reason(name: str, mtime: float, now: float) -> str | None:
    """Why a redaction temporary is abandoned, or None when it is not one or may still be written.

    Our own process id counts as alive: this process may be writing it right now."""
    match = _REDACTION_TEMP.match(name)
    if not match:
        return None
    if match["pid"] is None:
        if now - mtime < UNNAMED_TEMP_STALE_SECONDS:
            return None
        return "redaction temporary without a process id, untouched for a day"
    pid = int(match["pid"])
    if pid == os.getpid() or process_alive(pid):
        return None
    return f"redaction temporary of process {pid}, which is gone"


def find_stale_temporaries(root: Path, scan_dirs: Iterable[str]) -> list[StaleTemporary]:
    """Redaction temporaries left in the scan folders by crashed audits (never a live writer's)."""
    found: list[StaleTemporary] = []
    now = time.time()
    seen: set[Path] = set()
    for folder in scan_dirs:
        base = Path(folder) if Path(folder).is_absolute() else root / folder
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path in seen or not _REDACTION_TEMP.match(name):
                    continue
                seen.add(path)
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                reason = stale_reason(name, st.st_mtime, now)
                if reason is not None:
                    found.append(StaleTemporary(str(path), reason))
    return found


def remove_stale_temporaries(stale: list[StaleTemporary], dry_run: bool) -> list[StaleTemporary]:
    """Remove each (unless dry_run), checking again just before that its writer is still gone."""
    out = []
    for item in stale:
        path = Path(item.path)
        if dry_run:
            out.append(item)
            continue
        try:
            if stale_reason(path.name, path.lstat().st_mtime, time.time()) is None:
                continue  # its writer came back to life (pid reused): not ours to remove
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            out.append(StaleTemporary(item.path, item.reason, False, type(exc).__name__))
            continue
        removed = not os.path.lexists(path)
        out.append(StaleTemporary(item.path, item.reason, removed, "" if removed else "still present after removal"))
    return out


class _StreamWriter:
    """Writes the redacted stream: original bytes, with each masked span replaced."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.position = 0  # bytes of the original stream written or replaced so far
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            if self.sink is not None:
                self.sink.write(data)

    def piece(self, piece: Piece, spans: list[tuple[int, int, str]]) -> None:
        for start, end, value in spans:
            if start < self.position:  # inside a span already masked (it ran into this piece)
                continue
            self.write(piece.data[self.position - piece.offset : start - piece.offset])
            self.write(mask(value).encode("utf-8", "surrogateescape"))
            self.position = end
        piece_end = piece.offset + len(piece.data)
        if self.position < piece_end:
            self.write(piece.data[self.position - piece.offset :])
            self.position = piece_end


def _stream_contains(path: Path, gz: bool, needles: set[bytes]) -> tuple[str, bool]:
    """(sha256 of the decompressed stream, whether any needle occurs in it), read in blocks."""
    digest = hashlib.sha256()
    keep = max((len(n) for n in needles), default=1) - 1
    tail = b""
    found = False
    for block in raw_blocks(path, BLOCK_SIZE, gz):
        digest.update(block)
        window = tail + block
        if not found and any(n in window for n in needles):
            found = True
        tail = window[-keep:] if keep else b""
    return digest.hexdigest(), found


def _create_exclusive(path: Path):
    """A new file only: never through a symlink, never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def redact_file(
    path: str | Path, fingerprints: set[str], dry_run: bool = True, known_secrets: Iterable[str] = ()
) -> RedactionResult:
    """Rewrite a rotated log with the listed secrets masked: temp file, fsync, verify, rename.

    Streams in bounded pieces, whatever the file's size or line length. Refuses a file that is
    not rotated (a service may be writing it) and a file that changed while being rewritten.
    `known_secrets` are the configured secret values, so a finding of the configured-secret rule
    can be matched again here.
    """
    path = Path(path)
    result = RedactionResult(path=str(path), dry_run=dry_run)
    if not is_rotated(path):
        result.error = "live log (not rotated): never rewritten"
        return result
    gz = path.name.endswith(".gz")
    scanner = SecretScanner(known_secrets=known_secrets)
    tmp = redaction_temp_path(path)
    created = False
    values: set[bytes] = set()
    try:
        before = path.stat()
        handle = sink = None
        if not dry_run:
            handle = _create_exclusive(tmp)
            created = True
            sink = gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) if gz else handle
        try:
            writer = _StreamWriter(sink)
            for piece, found in scanner.iter_matches(path):
                spans = [(m.start, m.end, m.value) for m in found if fingerprint(m.rule.id, m.value) in fingerprints]
                writer.piece(piece, spans)
                result.secrets_masked += len(spans)
                values.update(v.encode("utf-8", "surrogateescape") for _s, _e, v in spans)
            if sink is not None:
                if gz:
                    sink.close()
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            if handle is not None:
                handle.close()
        if dry_run or result.secrets_masked == 0:
            if created:
                tmp.unlink(missing_ok=True)
            return result
        os.chmod(tmp, before.st_mode & 0o7777)
        written, leaked = _stream_contains(tmp, gz, values)
        if written != writer.digest.hexdigest() or leaked:
            tmp.unlink(missing_ok=True)
            result.error = "verification of the rewritten file failed; original kept"
            return result
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            tmp.unlink(missing_ok=True)
            result.error = "file changed while being redacted; original kept"
            return result
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        result.done = True
    except (OSError, EOFError, zlib.error) as exc:
        if created:
            tmp.unlink(missing_ok=True)
        result.error = f"{type(exc).__name__}"
    return result
