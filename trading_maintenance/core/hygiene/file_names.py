"""What a file's name says to hygiene: its date (only in dated layouts), whether it is a writer's
temporary, a live or rotated log, already compressed, or a backup the backup job manages itself.

Pure functions over names and paths; nothing is read from disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as dtime
from zoneinfo import ZoneInfo

DAY = 86400
_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2}|19\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
ALREADY_COMPRESSED = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".zip", ".parquet", ".tgz", ".7z", ".lz4", ".enc")
NAME_DATE_TOLERANCE_DAYS = 2  # a name date further than this from the file's time is reported

_ISO_DAY = r"(?P<date>\d{4}-\d{2}-\d{2})"
_COMPACT_STAMP = r"(?P<date>\d{8})T\d{6}Z"
_GZ = r"(?:\.gz)?"
# Relative paths (under the category folder) whose name date is the file's age.
MARKET_DATA_LAYOUTS = (re.compile(rf"^[^/]+/[^/]+/{_ISO_DAY}\.parquet$"),)
EXPORT_LAYOUTS = (re.compile(rf"^tradenote/tradenote_{_ISO_DAY}(?:\.csv|\.zip|_metrics\.json|_risk\.json){_GZ}$"),)
REPORT_LAYOUTS = (
    re.compile(rf"^maintenance/(?:maintenance_report|performance)_{_ISO_DAY}\.(?:json|md){_GZ}$"),
    # core.reports.generate.report_path: a report's age counts from the last day it covers.
    re.compile(rf"^maintenance/(?P<kind>daily|weekly|custom)/maintenance_report_(?P=kind)_"
               rf"(?:\d{{4}}-\d{{2}}-\d{{2}}_to_)?{_ISO_DAY}\.(?:html|json|csv){_GZ}$"),
    re.compile(rf"^reconciliation/reconciliation_{_COMPACT_STAMP}\.(?:json|md){_GZ}$"),
    re.compile(rf"^security/security_audit_{_COMPACT_STAMP}\.(?:json|sarif){_GZ}$"),
)

# `.tmp` covers every temporary this project writes (core.common.atomic.temporary_name_for);
# `.download` is the object store's download in progress (resources/object_store.py).
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".partial", ".part", ".download")


def date_from_name(name: str) -> date | None:
    """The first YYYY-MM-DD or YYYYMMDD date in a file name, or None."""
    for match in _DATE_IN_NAME.finditer(name):
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
    return None


def layout_date(relative: str, layouts: tuple[re.Pattern, ...]) -> date | None:
    """The date of a path in one of the dated layouts, or None (not a dated layout, no real date)."""
    for layout in layouts:
        match = layout.match(relative.replace(os.sep, "/"))
        if match:
            digits = match["date"].replace("-", "")
            try:
                return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            except ValueError:
                return None
    return None


def day_start(day: date, tz: str) -> float:
    return datetime.combine(day, dtime(0, 0), tzinfo=ZoneInfo(tz)).timestamp()


def age_stamp_factory(root: str, layouts: tuple[re.Pattern, ...], tz: str) -> Callable[[str, os.stat_result], float]:
    """The timestamp a file's age counts from: its layout's date (midnight, tz) or its mtime."""

    def stamp(path: str, st: os.stat_result) -> float:
        day = layout_date(os.path.relpath(path, root), layouts) if layouts else None
        return day_start(day, tz) if day is not None else st.st_mtime

    return stamp


def misleading_name_date(path: str, mtime: float, tz: str) -> str | None:
    """A note when a name outside the dated layouts holds a date far from the file's own time."""
    day = date_from_name(os.path.basename(path))
    if day is None:
        return None
    distance = abs(mtime - day_start(day, tz)) / DAY
    if distance <= NAME_DATE_TOLERANCE_DAYS + 1:
        return None
    written = datetime.fromtimestamp(mtime, ZoneInfo(tz)).date()
    return f"name holds date {day.isoformat()} but the file is from {written.isoformat()}: age taken from the file's time"


def is_temporary_name(relative: str) -> bool:
    """A name of a file still being written (or left by a crashed writer), not data.

    Compression suffixes are looked through, so `x.gz.tmp.gz` (a temp file compressed by mistake) is
    still temporary; a `.name-work-*` folder holds only temporaries."""
    parts = relative.replace(os.sep, "/").split("/")
    if any(part.startswith(".") and "-work-" in part for part in parts):
        return True
    name = parts[-1].lower()
    while name.endswith(ALREADY_COMPRESSED) and "." in name.strip("."):
        name = name.rsplit(".", 1)[0]
    return name.endswith(TEMPORARY_SUFFIXES)


def is_live_log(path: str) -> bool:
    return path.endswith(".log")


def is_newest_rotated_log(path: str) -> bool:
    """`x.log.1`: the newest rotated file, which a writer that never reopens may still hold."""
    return path.endswith(".log.1")


def is_compressed_name(path: str) -> bool:
    return path.lower().endswith(ALREADY_COMPRESSED)


def is_managed_backup(path: str) -> bool:
    """Archives written by backup_archive: their retention is the backup job's own, which runs only
    after a new backup is verified and never deletes the newest one. Age alone must not remove the
    last good backup when backups have been failing for a week."""
    name = os.path.basename(path)
    return name.startswith(("backup-", ".backup-")) or in_backup_repository(path)


# The backup repository's own layout: <repository>/config.json and data/<2 hex>/<pack>, index/<id>, snapshots/<id>.
_REPOSITORY_DEPTH = 3


def in_backup_repository(path: str) -> bool:
    """Inside the backup repository (backups/repository/): a pack written months ago may hold every
    snapshot's unchanged files, and the repository's prune is the only thing that may remove one."""
    folder = os.path.dirname(path)
    for _ in range(_REPOSITORY_DEPTH):
        if os.path.basename(folder) == "repository" and os.path.isfile(os.path.join(folder, "config.json")):
            return True
        folder = os.path.dirname(folder)
    return False
