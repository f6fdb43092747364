"""Which files the secret scan reads, and which of them it may rewrite.

Every regular file under the scan folders is read, except symlinks, path-allowlisted files and
temporaries (hidden `*.tmp`: a writer's file in progress or a crash's leftover, never a log).
Only rotated logs may be rewritten: a service may still be writing its live log.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

ROTATED = re.compile(r"(?:\.\d+|[-_.]\d{4}-?\d{2}-?\d{2}(?:[-_T]?\d+)?|\.old|\.bak)(?:\.gz)?$|\.gz$")


def is_temporary(name: str) -> bool:
    """A hidden `*.tmp`: a file being written (or left by a crashed writer), not data or a log.

    Looks through `.gz`, so a temporary compressed by mistake (`.x.log.1.redact.tmp.gz`) is still one."""
    while name.endswith(".gz"):
        name = name[:-3]
    return name.startswith(".") and name.endswith(".tmp")


def is_rotated(path: str | Path) -> bool:
    """`app.log.1`, `app.log.2.gz`, `app-20240501.log.gz`, `app.log.old`: not a file a service writes."""
    name = Path(path).name
    return not is_temporary(name) and bool(ROTATED.search(name))


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
                if path in seen or is_temporary(name):
                    continue
                seen.add(path)
                try:
                    rel = str(path.relative_to(root))
                except ValueError:
                    rel = str(path)
                if path.is_symlink() or not path.is_file() or path_allowed(rel, allowlist):
                    continue
                yield path, rel
