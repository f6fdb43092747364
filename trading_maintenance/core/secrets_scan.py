"""Scanning files for secrets: fast candidate pass, exact rules, masking, baseline, redaction.

How it stays fast: a file is read in ~16 MB blocks cut at line ends (gzip members are streamed
through one decompressor, so a line split across a member boundary is whole again); numpy finds
the line offsets, the lines become a zero-copy Arrow string array, and polars runs every rule's
pre-filter at once (Rust regex with SIMD literal search, on all cores). Only the few matching
lines reach the exact Python rules.

What never leaves this module: the secret value. A `Finding` carries a fingerprint (a hash of rule
and value), the masked value (a few leading characters and the length) and the location.
"""

from __future__ import annotations

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

from trading_maintenance.core.secret_rules import ALLOW_MARKERS, RULES, RULES_BY_ID, Rule, combined_prefilter

BLOCK_SIZE = 16 * 1024 * 1024
PEM_CARRY = 64 * 1024  # a private key begun near a block's end is carried into the next block
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


def line_blocks(path: Path, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Blocks that end at a line end (the last one may lack its newline)."""
    carry = b""
    pending: Exception | None = None
    raw = _raw_blocks(path, block_size)
    while True:
        try:
            data = next(raw)
        except StopIteration:
            break
        except (OSError, EOFError, zlib.error) as exc:  # scan what was read, then report
            pending = exc
            break
        buf = carry + data if carry else data
        if len(buf) < block_size:
            carry = buf
            continue
        cut = buf.rfind(b"\n") + 1
        if cut <= 0:
            carry = buf
            continue
        begin = buf.rfind(b"-----BEGIN", max(0, cut - PEM_CARRY), cut)
        if begin >= 0 and buf.find(b"-----END", begin, cut) < 0:
            line_start = buf.rfind(b"\n", 0, begin) + 1
            if line_start > 0:
                cut = line_start
        yield buf[:cut]
        carry = buf[cut:]
    if carry:
        yield carry
    if pending is not None:
        raise pending


def _looks_binary(head: bytes) -> bool:
    return b"\0" in head[:8192]


# ---------------------------------------------------------------------------------------------
# the scanner


class SecretScanner:
    """Scans files for the rules' secrets; the candidate pass runs all pre-filters at once."""

    def __init__(self, rules: list[Rule] | None = None, block_size: int = BLOCK_SIZE):
        self.rules = rules or RULES
        self.block_size = block_size
        self.prefilter = combined_prefilter(self.rules)

    def _candidate_lines(self, block: bytes) -> tuple[list[int], object]:
        import numpy as np
        import polars as pl
        import pyarrow as pa

        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                # Line count is kept; invalid bytes become U+FFFD, which no rule's value contains.
                block = block.decode("utf-8", "replace").encode("utf-8")
        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        ends = newlines + 1
        if not block.endswith(b"\n"):
            ends = np.append(ends, len(block))
        offsets = np.empty(len(ends) + 1, dtype=np.int64)
        offsets[0] = 0
        offsets[1:] = ends
        lines = pa.Array.from_buffers(pa.large_string(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(block)])
        hits = pl.from_arrow(lines).str.contains(self.prefilter).arg_true().to_list()
        return hits, (block, offsets)

    def scan_file(self, path: str | Path, display: str | None = None) -> FileResult:
        path = Path(path)
        result = FileResult(path=display or str(path))
        line_base = 0
        first = True
        try:
            for block in line_blocks(path, self.block_size):
                if first:
                    first = False
                    if _looks_binary(block):
                        result.skipped = "binary"
                        return result
                result.bytes_scanned += len(block)
                hits, (buf, offsets) = self._candidate_lines(block)
                n_lines = len(offsets) - 1
                for idx in hits:
                    start, end = int(offsets[idx]), int(offsets[idx + 1])
                    line = buf[start:end].decode("utf-8", "surrogateescape")
                    window = line
                    if "-----BEGIN" in line:
                        window = buf[start : min(len(buf), start + 20000)].decode("utf-8", "surrogateescape")
                    allowed = has_allow_marker(line)
                    for raw in match_text(window, self.rules, first_line_end=len(line)):
                        result.findings.append(
                            Finding(
                                path=result.path,
                                line=line_base + idx + 1,
                                column=raw.start + 1,
                                rule=raw.rule.id,
                                fingerprint=fingerprint(raw.rule.id, raw.value),
                                masked=mask(raw.value),
                                length=len(raw.value),
                                severity=raw.rule.severity,
                                status="allowed" if allowed else "active",
                            )
                        )
                line_base += n_lines
            result.lines = line_base
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            result.lines = line_base
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


def redact_bytes(data: bytes, fingerprints: set[str], rules: list[Rule] | None = None) -> tuple[bytes, int, list[str]]:
    """The data with every secret whose fingerprint is listed replaced by its masked form.

    Everything else stays byte-identical (lines are handled with surrogateescape). Returns
    (new bytes, secrets masked, values masked) - the values only for the caller's verification.
    """
    rules = rules or RULES
    out: list[bytes] = []
    count = 0
    values: list[str] = []
    text = data.decode("utf-8", "surrogateescape")
    pos = 0
    spans: list[tuple[int, int, str]] = []
    line_start = 0
    while line_start < len(text):
        nl = text.find("\n", line_start)
        line_end = len(text) if nl < 0 else nl + 1
        line = text[line_start:line_end]
        window = text[line_start : line_start + 20000] if "-----BEGIN" in line else line
        for raw in match_text(window, rules, first_line_end=len(line)):
            if fingerprint(raw.rule.id, raw.value) in fingerprints:
                s, e = line_start + raw.start, line_start + raw.end
                if not spans or s >= spans[-1][1]:
                    spans.append((s, e, raw.value))
        line_start = line_end
    pieces: list[str] = []
    for s, e, value in spans:
        pieces.append(text[pos:s])
        pieces.append(mask(value))
        pos = e
        count += 1
        values.append(value)
    pieces.append(text[pos:])
    out.append("".join(pieces).encode("utf-8", "surrogateescape"))
    return b"".join(out), count, values


def _read_all(path: Path, gz: bool | None = None) -> bytes:
    return b"".join(_raw_blocks(path, BLOCK_SIZE, gz))


def redact_file(path: str | Path, fingerprints: set[str], dry_run: bool = True) -> RedactionResult:
    """Rewrite a rotated log with the listed secrets masked: temp file, fsync, verify, rename.

    Refuses a file that is not rotated (a service may be writing it) and a file that changed
    while being rewritten.
    """
    path = Path(path)
    result = RedactionResult(path=str(path), dry_run=dry_run)
    if not is_rotated(path):
        result.error = "live log (not rotated): never rewritten"
        return result
    try:
        before = path.stat()
        original = _read_all(path)
        new, count, values = redact_bytes(original, fingerprints)
        result.secrets_masked = count
        if dry_run or count == 0:
            return result
        tmp = path.with_name(f".{path.name}.redact.tmp")
        payload = gzip.compress(new, mtime=0) if path.name.endswith(".gz") else new
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, before.st_mode & 0o7777)
        check = _read_all(tmp, gz=path.name.endswith(".gz"))
        if check != new or any(v in check.decode("utf-8", "surrogateescape") for v in values):
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
        result.error = f"{type(exc).__name__}"
    return result


def rule_descriptions() -> dict[str, Rule]:
    return dict(RULES_BY_ID)
