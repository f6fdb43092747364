"""Reading a file (plain or gzip) as bounded pieces of whole lines, or parts of one long line.

A file is read in ~16 MB blocks cut at line ends (gzip members are streamed through one
decompressor, so a line split across a member boundary is whole again). A line longer than a
block (a log without newlines) is cut into `LONG_LINE_PIECE` parts, each with `WINDOW_CONTEXT`
bytes of the line before and after it, so a secret across a cut is found once, by the part it
starts in. Nothing holds more than about two blocks, whatever the file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK_SIZE = 16 * 1024 * 1024
PEM_CARRY = 64 * 1024  # a private key begun near a block's end is carried into the next block
PEM_WINDOW = 20000  # a private key's lines are matched together within this many bytes
# Longer than any rule's match (a PEM key is at most ~17 KB), so a cut never hides a secret.
WINDOW_CONTEXT = 32 * 1024
LONG_LINE_PIECE = 4 * 1024 * 1024  # a long line's part scanned at once: small, so its copies stay small
LONG_LINE_WINDOW = 256 * 1024  # ... and validated in windows this long around its candidates


def raw_blocks(path: Path, block_size: int, gz: bool | None = None) -> Iterator[bytes]:
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
    raw = raw_blocks(path, block_size, gz)
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


def looks_binary(head: bytes) -> bool:
    return b"\0" in head[:8192]
