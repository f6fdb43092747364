"""Scanning files for secrets: a candidate search at regex-engine speed, then exact rules.

How it stays fast: each piece of a file (see `reading`) goes once through the candidate engine
(Hyperscan, or its fallback; see `engine`), which reports where any rule's pre-filter occurs. Only
the lines (or, in a long line, the windows) around those spans reach the exact Python rules, and
only the rules whose pre-filter occurred there. Text is handled as Latin-1 (one character per
byte), so every offset is a byte offset into the (decompressed) file.

How it stays small: a piece is at most about one block; a long line's part is validated in
`LONG_LINE_WINDOW` windows with `WINDOW_CONTEXT` bytes on both sides, and a match is reported by
the window (and the part) it starts in, so a secret across a cut is found once.

What never leaves this module: the secret value. Findings carry fingerprints and masked values.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from trading_maintenance.core.security.engine import candidate_engine
from trading_maintenance.core.security.findings import FileResult, Finding, fingerprint, mask
from trading_maintenance.core.security.reading import (
    BLOCK_SIZE,
    LONG_LINE_WINDOW,
    PEM_WINDOW,
    WINDOW_CONTEXT,
    Piece,
    line_pieces,
    looks_binary,
)
from trading_maintenance.core.security.rules import ALLOW_MARKERS, RULES, Rule, configured_secret_rule

_ALLOW_MARKER_BYTES = tuple(marker.encode() for marker in ALLOW_MARKERS)


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
    """Scans files for the rules' secrets; one candidate pass per piece, exact rules on candidates.

    `known_secrets`: values configured as secrets (broker keys, passwords, webhook URLs...). They
    are found wherever they appear, whatever they look like: no placeholder or entropy check.
    """

    def __init__(self, rules: list[Rule] | None = None, block_size: int = BLOCK_SIZE, known_secrets: Iterable[str] = ()):
        self.rules = list(rules or RULES)
        configured = configured_secret_rule(known_secrets)
        if configured is not None:
            self.rules.insert(0, configured)  # first: it wins an overlap with a generic rule
        self.block_size = block_size
        self.engine = candidate_engine([(i, p) for i, rule in enumerate(self.rules) for p in rule.candidate_patterns()])
        # numpy counts the lines of every block: loaded with the engine, as part of building the scanner, so the
        # first file's scan does not pay its import (~80 ms); the module itself stays cheap to import
        import numpy  # noqa: F401

    def _rules(self, indexes: set[int]) -> list[Rule]:
        return [self.rules[i] for i in sorted(indexes)]  # rule order decides overlaps

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
                if looks_binary(piece.data):
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
        """Matches in a piece of whole lines, and how many lines it holds."""
        import numpy as np

        buf = piece.data
        is_newline = np.frombuffer(buf, dtype=np.uint8) == 10
        n_lines = int(np.count_nonzero(is_newline)) + (not buf.endswith(b"\n"))
        rules_at: dict[int, set[int]] = {}  # line start -> rules with a candidate on that line
        for start, end, rule in self.engine.spans(buf):
            line_start = buf.rfind(b"\n", 0, start) + 1
            while True:  # every line the span touches
                rules_at.setdefault(line_start, set()).add(rule)
                newline = buf.find(b"\n", line_start, max(end - 1, line_start))
                if newline < 0:
                    break
                line_start = newline + 1
        found = []
        counted_to, line_no = 0, line_base + 1
        for start in sorted(rules_at):
            line_no += int(np.count_nonzero(is_newline[counted_to:start]))
            counted_to = start
            newline = buf.find(b"\n", start)
            end = len(buf) if newline < 0 else newline + 1
            line = buf[start:end].decode("latin-1")
            window = line
            if "-----BEGIN" in line:
                window = buf[start : min(len(buf), start + PEM_WINDOW)].decode("latin-1")
            allowed = has_allow_marker(line)
            for raw in match_text(window, self._rules(rules_at[start]), first_line_end=len(line)):
                found.append(
                    Located(piece.offset + start + raw.start, piece.offset + start + raw.end, line_no,
                            raw.start + 1, raw.rule, _as_text(raw.value), allowed)
                )
        return found, n_lines

    def _long_line_matches(self, piece: Piece, line_no: int, line_start: int) -> list[Located]:
        """Matches starting in a part of a long line. The part's own span is cut into windows of
        LONG_LINE_WINDOW, each validated with WINDOW_CONTEXT on both sides when a candidate span
        touches it; each window reports the matches that start in its own span."""
        text = piece.before + piece.data + piece.after
        allowed = any(marker in text for marker in _ALLOW_MARKER_BYTES)
        own_from, own_to = len(piece.before), len(piece.before) + len(piece.data)
        rules_at: dict[int, set[int]] = {}  # window index -> rules with a candidate in its text
        last = (own_to - own_from - 1) // LONG_LINE_WINDOW
        for start, end, rule in self.engine.spans(text):
            first = max(0, (start - own_from - WINDOW_CONTEXT) // LONG_LINE_WINDOW)
            for index in range(first, last + 1):
                window_from = own_from + index * LONG_LINE_WINDOW - WINDOW_CONTEXT
                if window_from >= end:
                    break
                window_to = min(own_from + (index + 1) * LONG_LINE_WINDOW, own_to) + WINDOW_CONTEXT
                if start < window_to:
                    rules_at.setdefault(index, set()).add(rule)
        found = []
        for index in sorted(rules_at):
            span_from = own_from + index * LONG_LINE_WINDOW
            span_to = min(span_from + LONG_LINE_WINDOW, own_to)
            window_start = max(0, span_from - WINDOW_CONTEXT)
            window = text[window_start : span_to + WINDOW_CONTEXT].decode("latin-1")
            for raw in match_text(window, self._rules(rules_at[index])):
                if span_from <= window_start + raw.start < span_to:
                    start = piece.offset + window_start + raw.start - len(piece.before)
                    found.append(
                        Located(start, start + raw.end - raw.start, line_no, start - line_start + 1, raw.rule, _as_text(raw.value), allowed)
                    )
        return found

    def scan_files(self, items: Iterable[tuple[str | Path, str | None]], threads: int | None = None) -> Iterator[FileResult]:
        """scan_file over (path, display) pairs, several files at once (the engine and the block reads
        release the GIL; each thread has its own Hyperscan scratch), results in the items' order. At most
        2 x threads files are in flight, so memory stays about two blocks a thread."""
        threads = threads or min(4, os.cpu_count() or 1)
        items = iter(items)
        if threads <= 1:
            for path, display in items:
                yield self.scan_file(path, display)
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            in_flight: deque = deque()
            for path, display in items:
                in_flight.append(pool.submit(self.scan_file, path, display))
                if len(in_flight) >= 2 * threads:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

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
