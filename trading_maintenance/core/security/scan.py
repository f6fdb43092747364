"""Scanning files for secrets: fast candidate pass, exact rules, masking, baseline, redaction.

How it stays fast: a file is read in ~16 MB blocks cut at line ends (gzip members are streamed
through one decompressor, so a line split across a member boundary is whole again); numpy finds
the line offsets, the lines become a zero-copy Arrow string array, and polars runs every rule's
pre-filter at once (Rust regex with SIMD literal search, on all cores). Only the few matching
lines reach the exact Python rules.

How it stays small: nothing holds more than about two blocks. A line longer than a block (a log
without newlines) is cut into block-sized pieces, each scanned with `WINDOW_CONTEXT` bytes of the
line before and after it, so a secret across a cut is found once, by the piece it starts in.
Redaction streams the same pieces into the temporary file. Text is handled as Latin-1 (one
character per byte), so every offset is a byte offset into the file.

What never leaves this module: the secret value. A `Finding` carries a fingerprint (a hash of rule
and value), the masked value (a few leading characters and the length) and the location.
"""

from __future__ import annotations

import codecs
import contextlib
import fnmatch
import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trading_maintenance.core.security.rules import (
    ALLOW_MARKERS,
    RULES,
    RULES_BY_ID,
    Rule,
    combined_prefilter,
    configured_secret_rule,
)

BLOCK_SIZE = 16 * 1024 * 1024
PEM_CARRY = 64 * 1024  # a private key begun near a block's end is carried into the next block
PEM_WINDOW = 20000  # a private key's lines are matched together within this many bytes
# Longer than any rule's match (a PEM key is at most ~17 KB), so a cut never hides a secret.
WINDOW_CONTEXT = 32 * 1024
LONG_LINE_PIECE = 4 * 1024 * 1024  # a long line's part scanned at once: small, so its copies stay small
LONG_LINE_WINDOW = 256 * 1024  # ... in windows this long, all pre-filtered in one vectorised pass

# Invalid UTF-8 becomes '?' byte for byte, so the Arrow copy keeps every line's offsets.
codecs.register_error("secrets_scan.same_length", lambda err: ("?" * (err.end - err.start), err.end))
ROTATED = re.compile(r"(?:\.\d+|[-_.]\d{4}-?\d{2}-?\d{2}(?:[-_T]?\d+)?|\.old|\.bak)(?:\.gz)?$|\.gz$")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    fingerprint: str
    masked: str
    length: int
    severity: str = "critical"
    status: str = "active"  # active / baselined / allowed (inline marker)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileResult:
    path: str
    bytes_scanned: int = 0
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""
    skipped: str = ""


def mask(value: str) -> str:
    """A few leading characters and the length; fewer characters for short values."""
    keep = 4 if len(value) >= 16 else (2 if len(value) >= 8 else 0)
    return f"{value[:keep]}…[{len(value)} chars]"


def fingerprint(rule_id: str, value: str) -> str:
    """Stable across files, lines and rotations: the same secret is one baseline entry."""
    return hashlib.sha256(f"{rule_id}\0{value}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


def is_rotated(path: str | Path) -> bool:
    """`app.log.1`, `app.log.2.gz`, `app-20240501.log.gz`, `app.log.old`: not a file a service writes."""
    return bool(ROTATED.search(Path(path).name))


# ---------------------------------------------------------------------------------------------
# exact matching of one text (a line, or a window for multi-line rules)


@dataclass(frozen=True)
class RawMatch:
    rule: Rule
    start: int  # offsets of the secret value inside the text
    end: int
    value: str


def match_text(text: str, rules: Iterable[Rule] = RULES, first_line_end: int | None = None) -> list[RawMatch]:
    """Every accepted secret in `text`, overlaps resolved in rule order (specific rules first).

    `first_line_end`: only matches starting before it count (for windows that extend past a line).
    """
    found: list[RawMatch] = []
    for rule in rules:
        if not rule.multiline and first_line_end is not None:
            target = text[:first_line_end]
        else:
            target = text
        for m in rule.regex.finditer(target):
            if first_line_end is not None and m.start() >= first_line_end:
                break
            value = m.group("secret")
            if not value or not rule.accepts(value, m):
                continue
            start, end = m.span("secret")
            if any(start < f.end and f.start < end for f in found):
                continue
            found.append(RawMatch(rule, start, end, value))
    found.sort(key=lambda r: r.start)
    return found


def has_allow_marker(line: str) -> bool:
    return any(marker in line for marker in ALLOW_MARKERS)


# ---------------------------------------------------------------------------------------------
# reading files in line-aligned blocks


def _raw_blocks(path: Path, block_size: int, gz: bool | None = None) -> Iterator[bytes]:
    if path.name.endswith(".gz") if gz is None else gz:
        # One decompressor per member, in sequence: bytes of consecutive members are one stream.
        with open(path, "rb") as handle:
            decomp = zlib.decompressobj(wbits=47)
            in_member = False
            while True:
                data = handle.read(block_size)
                if not data:
                    break
                while data:
                    in_member = True
                    out = decomp.decompress(data)
                    if out:
                        yield out
                    if decomp.eof:
                        data = decomp.unused_data
                        decomp = zlib.decompressobj(wbits=47)
                        in_member = False
                    else:
                        data = b""
            tail = decomp.flush()
            if tail:
                yield tail
            if in_member and not decomp.eof:
                raise EOFError("gzip stream ends inside a member (truncated file)")
    else:
        with open(path, "rb") as handle:
            while True:
                data = handle.read(block_size)
                if not data:
                    break
                yield data


@dataclass(frozen=True)
class Piece:
    """A part of the (decompressed) file: whole lines, or a part of one long line.

    `data` starts at `offset` in the stream. For a part of a long line (`partial`), `before` and
    `after` are up to WINDOW_CONTEXT bytes of the same line around it: context for matching only.
    """

    data: bytes
    offset: int
    partial: bool = False
    line_ends: bool = True
    before: bytes = b""
    after: bytes = b""


def line_pieces(path: Path, block_size: int = BLOCK_SIZE, gz: bool | None = None) -> Iterator[Piece]:
    """Pieces of about `block_size` bytes: whole lines (the last piece may lack its newline), or,
    for a line longer than a block, that line's parts with their context. Memory stays about two
    blocks whatever the file. A read error is raised after every piece read before it."""
    carry = b""
    offset = 0
    long_line = False
    before = b""
    pending: Exception | None = None
    raw = _raw_blocks(path, block_size, gz)
    while True:
        try:
            data = next(raw)
        except StopIteration:
            break
        except (OSError, EOFError, zlib.error) as exc:  # scan what was read, then report
            pending = exc
            break
        buf = carry + data if carry else data
        while True:
            if long_line:
                end = buf.find(b"\n")
                pos = 0
                while True:
                    if 0 <= end < pos + LONG_LINE_PIECE:  # the line ends in this part
                        yield Piece(buf[pos : end + 1], offset, True, True, before)
                        offset += end + 1 - pos
                        pos = end + 1
                        long_line, before = False, b""
                        break
                    if len(buf) - pos < LONG_LINE_PIECE + WINDOW_CONTEXT:
                        break
                    own = pos + LONG_LINE_PIECE
                    yield Piece(buf[pos:own], offset, True, False, before, buf[own : own + WINDOW_CONTEXT])
                    before = buf[own - WINDOW_CONTEXT : own]
                    offset += LONG_LINE_PIECE
                    pos = own
                buf = buf[pos:]
                if long_line:
                    break
                continue
            if len(buf) < block_size:
                break
            cut = buf.rfind(b"\n") + 1
            if cut <= 0:
                long_line = True
                continue
            begin = buf.rfind(b"-----BEGIN", max(0, cut - PEM_CARRY), cut)
            if begin >= 0 and buf.find(b"-----END", begin, cut) < 0:
                line_start = buf.rfind(b"\n", 0, begin) + 1
                if line_start > 0:
                    cut = line_start
            yield Piece(buf[:cut], offset)
            offset += cut
            buf = buf[cut:]
            break
        carry = buf
    if carry:
        yield Piece(carry, offset, long_line, True, before) if long_line else Piece(carry, offset)
    if pending is not None:
        raise pending


def _looks_binary(head: bytes) -> bool:
    return b"\0" in head[:8192]


# ---------------------------------------------------------------------------------------------
# the scanner


@dataclass(frozen=True)
class Located:
    """A match in a file: byte offsets in the (decompressed) stream and its line and column."""

    start: int
    end: int
    line: int
    column: int
    rule: Rule
    value: str  # as text (UTF-8, surrogateescape): for fingerprints and masks
    allowed: bool


def _as_text(latin1: str) -> str:
    return latin1.encode("latin-1").decode("utf-8", "surrogateescape")


class SecretScanner:
    """Scans files for the rules' secrets; the candidate pass runs all pre-filters at once.

    `known_secrets`: values configured as secrets (broker keys, passwords, webhook URLs...). They
    are found wherever they appear, whatever they look like: no placeholder or entropy check.
    """

    def __init__(self, rules: list[Rule] | None = None, block_size: int = BLOCK_SIZE, known_secrets: Iterable[str] = ()):
        self.rules = list(rules or RULES)
        configured = configured_secret_rule(known_secrets)
        if configured is not None:
            self.rules.insert(0, configured)  # first: it wins an overlap with a generic rule
        self.block_size = block_size
        self.prefilter = combined_prefilter(self.rules)

    def _candidate_lines(self, block: bytes) -> tuple[list[int], object]:
        import numpy as np
        import polars as pl
        import pyarrow as pa

        text_block = block
        if not block.isascii():
            text_block = block.decode("utf-8", "secrets_scan.same_length").encode("utf-8")
        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        ends = newlines + 1
        if not block.endswith(b"\n"):
            ends = np.append(ends, len(block))
        offsets = np.empty(len(ends) + 1, dtype=np.int64)
        offsets[0] = 0
        offsets[1:] = ends
        lines = pa.Array.from_buffers(pa.large_string(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(text_block)])
        hits = pl.from_arrow(lines).str.contains(self.prefilter).arg_true().to_list()
        return hits, offsets


    def iter_matches(self, path: str | Path, stats: FileResult | None = None) -> Iterator[tuple[Piece, list[Located]]]:
        """Every piece of the file with the matches that start in it, in order.

        `stats` (optional) receives bytes and lines scanned, and `skipped` for a binary file.
        """
        path = Path(path)
        stats = stats if stats is not None else FileResult(path=str(path))
        line_base = 0  # complete lines before the current piece
        long_line_start = 0
        first = True
        for piece in line_pieces(path, self.block_size):
            if first:
                first = False
                if _looks_binary(piece.data):
                    stats.skipped = "binary"
                    return
            stats.bytes_scanned += len(piece.data)
            if piece.partial:
                if not piece.before:
                    long_line_start = piece.offset
                found = self._long_line_matches(piece, line_base + 1, long_line_start)
                if piece.line_ends:
                    line_base += 1
            else:
                found, n_lines = self._block_matches(piece, line_base)
                line_base += n_lines
            stats.lines = line_base
            yield piece, found

    def _block_matches(self, piece: Piece, line_base: int) -> tuple[list[Located], int]:
        buf = piece.data
        hits, offsets = self._candidate_lines(buf)
        found = []
        for idx in hits:
            start, end = int(offsets[idx]), int(offsets[idx + 1])
            line = buf[start:end].decode("latin-1")
            window = line
            if "-----BEGIN" in line:
                window = buf[start : min(len(buf), start + PEM_WINDOW)].decode("latin-1")
            allowed = has_allow_marker(line)
            for raw in match_text(window, self.rules, first_line_end=len(line)):
                found.append(
                    Located(piece.offset + start + raw.start, piece.offset + start + raw.end, line_base + idx + 1,
                            raw.start + 1, raw.rule, _as_text(raw.value), allowed)
                )
        return found, len(offsets) - 1

    def _long_line_matches(self, piece: Piece, line_no: int, line_start: int) -> list[Located]:
        """Matches starting in a part of a long line: windows with WINDOW_CONTEXT on both sides,
        pre-filtered together; each window reports the matches that start in its own span."""
        import polars as pl

        text = piece.before + piece.data + piece.after
        allowed = has_allow_marker(text.decode("latin-1"))
        spans = [(own, min(own + LONG_LINE_WINDOW, len(piece.before) + len(piece.data)))
                 for own in range(len(piece.before), len(piece.before) + len(piece.data), LONG_LINE_WINDOW)]
        windows = [text[max(0, a - WINDOW_CONTEXT) : b + WINDOW_CONTEXT].decode("latin-1") for a, b in spans]
        hits = pl.Series(windows, dtype=pl.String).str.contains(self.prefilter).arg_true().to_list()
        found = []
        for idx in hits:
            own_from, own_to = spans[idx]
            window_start = max(0, own_from - WINDOW_CONTEXT)
            for raw in match_text(windows[idx], self.rules):
                if own_from <= window_start + raw.start < own_to:
                    start = piece.offset + window_start + raw.start - len(piece.before)
                    found.append(
                        Located(start, start + raw.end - raw.start, line_no, start - line_start + 1, raw.rule, _as_text(raw.value), allowed)
                    )
        return found

    def scan_file(self, path: str | Path, display: str | None = None) -> FileResult:
        path = Path(path)
        result = FileResult(path=display or str(path))
        try:
            for _piece, found in self.iter_matches(path, result):
                for match in found:
                    result.findings.append(
                        Finding(
                            path=result.path,
                            line=match.line,
                            column=match.column,
                            rule=match.rule.id,
                            fingerprint=fingerprint(match.rule.id, match.value),
                            masked=mask(match.value),
                            length=len(match.value),
                            severity=match.rule.severity,
                            status="allowed" if match.allowed else "active",
                        )
                    )
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            result.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        return result


# ---------------------------------------------------------------------------------------------
# which files, path allowlists, baseline


def path_allowed(rel_path: str, patterns: Iterable[str]) -> bool:
    """True when a path allowlist pattern (glob, relative to the data root) covers the file."""
    name = rel_path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if fnmatch.fnmatch(rel_path, pattern) or fnmatch.fnmatch(name, pattern):
            return True
        if pattern.endswith("/**") and (rel_path + "/").startswith(pattern[:-2]):
            return True
    return False


def iter_scan_files(root: Path, scan_dirs: Iterable[str], allowlist: Iterable[str]) -> Iterator[tuple[Path, str]]:
    """(path, path relative to root) of every regular file under the scan folders, allowlist applied."""
    allowlist = list(allowlist)
    seen: set[Path] = set()
    for folder in scan_dirs:
        base = (root / folder) if not Path(folder).is_absolute() else Path(folder)
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path in seen or name.startswith(".") and name.endswith(".tmp"):
                    continue
                seen.add(path)
                try:
                    rel = str(path.relative_to(root))
                except ValueError:
                    rel = str(path)
                if path.is_symlink() or not path.is_file() or path_allowed(rel, allowlist):
                    continue
                yield path, rel


def load_baseline(path: str | Path) -> tuple[set[str], str]:
    """Accepted fingerprints; (set, error). A missing file is an empty baseline, a corrupt one is reported."""
    path = Path(path)
    if not path.exists():
        return set(), ""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return set(), f"baseline {path.name} unreadable: {type(exc).__name__}"
    if isinstance(data, dict):
        entries = data.get("fingerprints", data.get("results", []))
    else:
        entries = data
    prints: set[str] = set()
    if isinstance(entries, dict):
        prints.update(str(k) for k in entries)
    elif isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, str):
                prints.add(entry)
            elif isinstance(entry, dict) and "fingerprint" in entry:
                prints.add(str(entry["fingerprint"]))
    return prints, ""


def baseline_document(findings: Iterable[Finding], existing: set[str] | None = None) -> dict:
    """A baseline accepting the given findings (and keeping already accepted fingerprints)."""
    entries: dict[str, dict] = {fp: {} for fp in sorted(existing or set())}
    for f in findings:
        entries[f.fingerprint] = {"rule": f.rule, "masked": f.masked, "first_seen": f"{f.path}:{f.line}"}
    return {"version": 1, "fingerprints": entries}


def apply_baseline(findings: list[Finding], accepted: set[str]) -> list[Finding]:
    out = []
    for f in findings:
        if f.status == "active" and f.fingerprint in accepted:
            f = Finding(**{**f.as_dict(), "status": "baselined"})
        out.append(f)
    return out


# ---------------------------------------------------------------------------------------------
# redaction of rotated files


@dataclass
class RedactionResult:
    path: str
    secrets_masked: int = 0
    done: bool = False
    dry_run: bool = True
    error: str = ""


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
    for block in _raw_blocks(path, BLOCK_SIZE, gz):
        digest.update(block)
        window = tail + block
        if not found and any(n in window for n in needles):
            found = True
        tail = window[-keep:] if keep else b""
    return digest.hexdigest(), found


def redact_file(
    path: str | Path, fingerprints: set[str], dry_run: bool = True, known_secrets: Iterable[str] = ()
) -> RedactionResult:
    """Rewrite a rotated log with the listed secrets masked: temp file, fsync, verify, rename.

    Streams in bounded pieces (see the module docstring), whatever the file's size or line
    length. Refuses a file that is not rotated (a service may be writing it) and a file that
    changed while being rewritten. `known_secrets` are the configured secret values, so a finding
    of the configured-secret rule can be matched again here.
    """
    path = Path(path)
    result = RedactionResult(path=str(path), dry_run=dry_run)
    if not is_rotated(path):
        result.error = "live log (not rotated): never rewritten"
        return result
    gz = path.name.endswith(".gz")
    scanner = SecretScanner(known_secrets=known_secrets)
    tmp = path.with_name(f".{path.name}.redact.tmp")
    values: set[bytes] = set()
    try:
        before = path.stat()
        with contextlib.ExitStack() as stack:
            sink = None
            if not dry_run:
                handle = stack.enter_context(open(tmp, "wb"))
                sink = stack.enter_context(gzip.GzipFile(fileobj=handle, mode="wb", mtime=0)) if gz else handle
            writer = _StreamWriter(sink)
            for piece, found in scanner.iter_matches(path):
                spans = [(m.start, m.end, m.value) for m in found if fingerprint(m.rule.id, m.value) in fingerprints]
                writer.piece(piece, spans)
                result.secrets_masked += len(spans)
                values.update(v.encode("utf-8", "surrogateescape") for _s, _e, v in spans)
            if sink is not None:
                sink.flush()
                if gz:
                    sink.close()
                handle.flush()
                os.fsync(handle.fileno())
        if dry_run or result.secrets_masked == 0:
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
        tmp.unlink(missing_ok=True)
        result.error = f"{type(exc).__name__}"
    return result


def rule_descriptions() -> dict[str, Rule]:
    return dict(RULES_BY_ID)
