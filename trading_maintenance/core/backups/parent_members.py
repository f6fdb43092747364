"""The members of a backup's parent snapshot, matched against the files being backed up without decoding
the parent as a whole.

A snapshot is written one member per line (see Repository.write_snapshot), each line exactly the compact
JSON of {name, size, sha256, kind, chunks, source, stat}. For a listed file, the line its unchanged entry
would have is known except for the checksum and the chunk ids; the parent's line for that name is taken
over as text when it is exactly that (name, size, kind, source and the whole stat key equal, a checksum of
64 hex digits, every chunk id in the index), so an unchanged member costs a few string comparisons instead
of a JSON decode (3,700 members: ~7 ms of json.loads and ~4 ms of checks before). Any other line (another
layout, other keys, a changed file) is decoded alone and goes the careful way, so nothing is trusted that
the decoded path would not trust. The lines come from the parent snapshot, which was authenticated whole.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii as json_string  # the encoder's own: as json.dumps writes it

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# a member line's checksum, kind and chunk list, as write_snapshot writes them: the chunk lists of a folder's block
# of lines are found in one pass of the regex engine (JSON escapes every quote inside a name or a source, so
# '"sha256":"' cannot start inside one)
_CHECKSUM_KIND_CHUNKS = re.compile(r'"sha256":"[0-9a-f]{64}","kind":"[A-Za-z0-9_]*","chunks":\[([^\]]*)\]')
# what a folder's digest covers; a change to how a member line is written changes this, so no parent line of
# the earlier form is ever taken over whole
FOLDER_DIGEST_FORMAT = b"folder-lines-v1\0"
_MEMBERS_OPEN = b',"members":['
_MEMBERS_CLOSE = b"\n]}"


def folder_digest(items: list[tuple]) -> str:
    """The digest of one folder's files as add_files gets them, (name, path, kind, source, (size, mtime_ns,
    inode)) each, in order: everything a member line holds except the checksum and the chunk ids, which an
    unchanged file keeps. The strings are joined by NUL, which no file name or path holds (any that does is
    digested by repr() instead), after their count; the stats as 64-bit integers."""
    try:
        names, paths, kinds, sources, stats = zip(*items)
        text = "\0".join((str(len(items)), *names, *paths, *kinds, *sources))
        packed = array("q", chain.from_iterable(stats)).tobytes()
        if text.count("\0") != 4 * len(items) or len(packed) != 24 * len(items):
            raise ValueError("a NUL inside a name or path, or a stat not of three numbers")
    except (TypeError, ValueError, OverflowError):  # a Path or a missing stat, a NUL, an inode past 2**63
        return hashlib.sha256(FOLDER_DIGEST_FORMAT + b"repr\0" + repr(items).encode("utf-8", "backslashreplace")).hexdigest()
    return hashlib.sha256(FOLDER_DIGEST_FORMAT + text.encode("utf-8", "surrogatepass") + b"\0" + packed).hexdigest()


def split_members(plaintext: bytes) -> tuple[dict, list[str]] | None:
    """(the manifest without its members, each member's JSON text) of a snapshot laid out one member per line,
    as write_snapshot writes it; None for any other layout (then the caller decodes the manifest whole).
    JSON escapes line breaks inside strings, so every raw line break is the writer's own."""
    first = plaintext.find(b"\n")
    if first < 0 or not plaintext.startswith(b"{") or not plaintext.endswith(_MEMBERS_CLOSE):
        return None
    head = plaintext[:first]
    if not head.endswith(_MEMBERS_OPEN):
        return None
    try:
        manifest = json.loads(head[:-len(_MEMBERS_OPEN)] + b"}")
        # decoded straight from the plaintext (the writer escapes everything but ASCII): no copy of the body first
        text = str(memoryview(plaintext)[first + 1:len(plaintext) - len(_MEMBERS_CLOSE)], "ascii")
    except ValueError:
        return None
    if not isinstance(manifest, dict) or "members" in manifest:
        return None
    lines = text.split(",\n") if text else []
    # every line break is one the writer put between members (as many as the separators) and every member
    # starts as one: one pass over the text, then one check per line start
    if text.count("\n") != max(len(lines) - 1, 0) or not all(map(str.startswith, lines, repeat('{"name":'))):
        return None
    summary = manifest.get("summary")
    if not isinstance(summary, dict) or summary.get("files") != len(lines):
        return None
    return manifest, lines


def member_entry_ok(entry) -> bool:
    """As manifest_members checks each entry, plus the stat key an unchanged file is matched by."""
    return (isinstance(entry, dict) and type(entry.get("name")) is str and type(entry.get("size")) is int
            and entry["size"] >= 0 and type(entry.get("sha256")) is str and _SHA256_HEX.fullmatch(entry["sha256"]) is not None
            and type(entry.get("kind")) is str and "stat" in entry)


def _ids_indexed(ids: str, known) -> bool:
    """Whether a chunk list's text, '"id","id"' (or empty), names only chunks in `known`: each id found in the
    index is 64 hex digits, so the text is exactly their list."""
    if not ids:
        return True
    if ids[0] != '"' or ids[-1] != '"':
        return False
    try:
        return all(map(known.__contains__, ids[1:-1].split('","')))
    except TypeError:
        return False


def _lines_sound(lines: list[str], known) -> bool:
    """Whether each member line holds a 64-hex checksum, a kind and a chunk list, every chunk in `known` (one
    pass of the regex engine over them all)."""
    chunk_lists = _CHECKSUM_KIND_CHUNKS.findall(",\n".join(lines))
    return len(chunk_lists) == len(lines) and _ids_indexed(",".join(filter(None, chunk_lists)), known)


class ParentMembers:
    """A parent's members by name: from its lines (split_members) or, for a parent of another layout, from its
    decoded members."""

    def __init__(self, lines: list[str] | None = None, members: list | None = None, folders: dict | None = None):
        self.lines = lines
        # folder digest -> [first line, lines]: the parent's folders whose lines were recorded from exactly the
        # files that digest covers (see reusable_block)
        self.folders = folders if lines is not None and isinstance(folders, dict) else {}
        self._sound: bool | None = None  # see _every_line_sound
        self._cursor = 0  # the files come in the parent's order: the next line is tried first
        self._by_name: dict[str, int] | None = None  # JSON-encoded name -> line, built only when a guess misses
        self._decoded: dict[str, dict] = {}
        self._kind_parts: dict[str, str] = {}
        self._last: tuple[str, int | None] = ("", None)  # the name last looked up, and its line
        if lines is None:
            self._decoded = {m["name"]: m for m in members or [] if isinstance(m, dict) and "stat" in m
                             and type(m.get("name")) is str}

    def _line_of(self, encoded_name: str) -> int | None:
        if self._last[0] == encoded_name:  # entry() after reusable_text() for the same (changed) file
            return self._last[1]
        number = self._find(encoded_name)
        self._last = (encoded_name, number)
        return number

    def _find(self, encoded_name: str) -> int | None:
        lines = self.lines
        cursor = self._cursor
        if cursor < len(lines) and lines[cursor].startswith(f'{{"name":{encoded_name},"size":'):
            self._cursor = cursor + 1
            return cursor
        if self._by_name is None:
            self._by_name = {}
            for number, line in enumerate(lines):
                end = line.find(',"size":')
                key = line[8:end] if line.startswith('{"name":"') and end > 0 else None
                if key is None:
                    try:
                        key = json_string(json.loads(line)["name"])
                    except (ValueError, TypeError, KeyError):
                        continue
                self._by_name.setdefault(key, number)
        number = self._by_name.get(encoded_name)
        if number is not None:
            self._cursor = number + 1
        return number

    def reusable_text(self, name: str, kind: str, source: str, listed: tuple[int, int, int],
                      known) -> tuple[str, str] | None:
        """(the parent's line, its checksum) when that line is exactly what this unchanged file would be
        recorded as, every chunk in `known` (the index); None otherwise (then see entry())."""
        if self.lines is None:
            return None
        encoded_name = json_string(name)
        size, mtime, inode = listed
        head = f'{{"name":{encoded_name},"size":{size},"sha256":"'
        lines = self.lines
        cursor = self._cursor
        if cursor < len(lines) and lines[cursor].startswith(head):  # the next line, as most are
            self._cursor = cursor + 1
            self._last = (encoded_name, cursor)
            line = lines[cursor]
        else:
            number = self._line_of(encoded_name)
            if number is None:
                return None
            line = lines[number]
        tail = f'],"source":{json_string(source)},"stat":[{size},{mtime},{inode}]}}'
        if not (line.startswith(head) and line.endswith(tail)):
            return None
        kind_part = self._kind_parts.get(kind)
        if kind_part is None:
            kind_part = self._kind_parts[kind] = f'","kind":{json_string(kind)},"chunks":['
        middle = line[len(head):len(line) - len(tail)]
        sha = middle[:64]
        if middle[64:64 + len(kind_part)] != kind_part or _SHA256_HEX.fullmatch(sha) is None:
            return None
        if not _ids_indexed(middle[64 + len(kind_part):], known):
            return None
        return line, sha

    def reusable_block(self, digest: str, items: list[tuple], known) -> list[str] | None:
        """The parent's lines of a folder whose files (`items`, as folder_digest takes them) are listed exactly as
        when the parent recorded them, every chunk in `known` (the index); None otherwise (then each file is
        matched alone). The digest stands for the lines' names, sizes, kinds, sources and stats; the range's
        first and last lines must name the folder's first and last file, every line must hold a 64-hex checksum,
        and every chunk id must be indexed, so a misplaced range or a pruned chunk is never taken over."""
        record = self.folders.get(digest)
        if type(record) is not list or len(record) != 2:
            return None
        first, count = record
        lines = self.lines
        if (type(first) is not int or type(count) is not int or count != len(items) or count < 1 or first < 0
                or first + count > len(lines)):
            return None
        block = lines[first:first + count]
        if not (block[0].startswith(f'{{"name":{json_string(items[0][0])},"size":')
                and block[-1].startswith(f'{{"name":{json_string(items[-1][0])},"size":')):
            return None
        if self._every_line_sound(known):
            self._cursor = first + count
            return block
        if not _lines_sound(block, known):
            return None
        self._cursor = first + count
        return block

    def _every_line_sound(self, known) -> bool:
        """Whether the parent's lines hold a 64-hex checksum, a kind and a chunk list each, every chunk in `known`:
        checked once over the whole parent (one pass of the regex engine), so a block needs no check of its own;
        when not, each block is checked alone (reusable_block)."""
        if self._sound is None:
            self._sound = _lines_sound(self.lines, known)
        return self._sound

    def entry(self, name: str) -> dict | None:
        """The parent's entry for `name`, decoded and checked (member_entry_ok), or None."""
        if self.lines is None:
            return self._decoded.get(name)
        if name not in self._decoded:
            number = self._line_of(json_string(name))
            entry = None
            if number is not None:
                try:
                    entry = json.loads(self.lines[number])
                except ValueError:
                    entry = None
            self._decoded[name] = entry if member_entry_ok(entry) and entry["name"] == name else None
        return self._decoded[name]
