"""Candidate search: where each rule's pre-filter occurs, at regex-engine speed.

Hyperscan (the PyPI wheel bundles it) compiles every rule's pre-filter, and every configured
secret as its own literal, into one database and scans the raw bytes once: no decoding, no line
splitting, no per-line Python. Where the wheel is missing (or refuses the CPU or a pattern), a
fallback gives the same answer: polars (Rust regex) picks the candidate lines, Python `re` finds
the spans in them.

Both engines promise: every occurrence of rule i's pre-filter inside one line of the data
intersects at least one reported span (start, end, i). The exact rules then run only where the
spans are. Text is Latin-1 (one character per byte), the same as the validating regexes see.
"""

from __future__ import annotations

import re
import threading

try:
    import hyperscan
except ImportError:  # no wheel for this platform: the fallback finds the same candidates
    hyperscan = None

# Python's `\s` on Latin-1 text; Hyperscan's `\s` is ASCII-only and Rust's lacks \x1c-\x1f, so
# the pre-filters spell it out and every engine agrees with the validating regexes.
_LATIN1_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0"


def portable_pattern(pattern: str) -> str:
    """`pattern` with `\\s` spelled out as the Latin-1 whitespace class (inside a class or alone)."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt == "s":
                out.append(_LATIN1_SPACE if in_class else f"[{_LATIN1_SPACE}]")
            else:
                out.append(c + nxt)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):  # a leading ']' is a member, not the end
                out.append("]")
                i += 1
            continue
        if c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


class HyperscanEngine:
    name = "hyperscan"

    def __init__(self, patterns: list[tuple[int, str]]):
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(
            expressions=[p.encode("ascii") for _, p in patterns],
            ids=[rule for rule, _ in patterns],
            elements=len(patterns),
            # the leftmost start, so a span covers the whole occurrence it reports
            flags=[hyperscan.HS_FLAG_SOM_LEFTMOST] * len(patterns),
        )
        self._local = threading.local()

    def spans(self, data: bytes) -> list[tuple[int, int, int]]:
        found: list[tuple[int, int, int]] = []

        def on_match(rule: int, start: int, end: int, _flags: int, _context: object) -> None:
            found.append((start, end, rule))

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:  # hyperscan's scratch space is per scan in progress: one per thread scanning
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        return found


class RegexEngine:
    name = "regex"

    def __init__(self, patterns: list[tuple[int, str]]):
        self._patterns = [(rule, re.compile(p)) for rule, p in patterns]
        # Rust-regex flags like (?i) apply to their group only, so one alternation finds every line.
        self._combined = "|".join(f"(?:{p})" for _, p in patterns)

    def _candidate_lines(self, data: bytes) -> list[tuple[int, int]]:
        import numpy as np
        import polars as pl
        import pyarrow as pa

        # Latin-1 to UTF-8: polars sees one character per byte of the file, as the rules do.
        text = data if data.isascii() else data.decode("latin-1").encode("utf-8")

        def line_offsets(buf: bytes) -> np.ndarray:
            ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10) + 1
            if not buf.endswith(b"\n"):
                ends = np.append(ends, len(buf))
            return np.concatenate(([0], ends)).astype(np.int64)

        original = line_offsets(data)
        offsets = original if text is data else line_offsets(text)
        lines = pa.Array.from_buffers(pa.large_string(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
        hits = pl.from_arrow(lines).str.contains(self._combined).arg_true().to_list()
        return [(int(original[i]), int(original[i + 1])) for i in hits]

    def spans(self, data: bytes) -> list[tuple[int, int, int]]:
        found: list[tuple[int, int, int]] = []
        for line_start, line_end in self._candidate_lines(data):
            line = data[line_start:line_end].decode("latin-1")
            for rule, pattern in self._patterns:
                found.extend((line_start + m.start(), line_start + m.end(), rule) for m in pattern.finditer(line))
        return found


def candidate_engine(patterns: list[tuple[int, str]]) -> HyperscanEngine | RegexEngine:
    """Hyperscan when the wheel is there and takes every pattern; the fallback otherwise.

    `patterns`: (rule index, pre-filter) pairs; a rule may have several."""
    portable = [(rule, portable_pattern(p)) for rule, p in patterns]
    if hyperscan is not None:
        try:
            return HyperscanEngine(portable)
        except hyperscan.error:  # a CPU without the instructions it needs, or a pattern it refuses
            pass
    return RegexEngine(portable)
