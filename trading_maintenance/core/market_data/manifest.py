"""An archive's manifest: what the archive was verified against, and what a re-run may reuse.

{archive_dir}/{SYMBOL}/{timeframe}/{YYYY-MM}.manifest.json is written only after its archive was
read back and found equal to its deduplicated sources:

    archive   name, size, mtime_ns, rows of the archive as verified
    sources   per daily file: name, size, mtime_ns, sha256, rows, first_us/last_us (its timestamps'
              range, epoch microseconds), outside_file_date (its rows in the archive whose New York
              date is not the file's)
    calendar, days   the archive's per-New-York-day sanity counts, so an unchanged archive's quality
              is known without reading it, and rows_sha256, the digest of the archive's rows of
              that day (day_digest.py; absent in manifests written before it, or where a day
              cannot have one)

A re-run reuses a source (does not read it) only when the archive still has the manifest's size
and mtime and the source still has its recorded size and mtime. Reusing is exact: a reused source
whose timestamps overlap anything read this run (a late file, a changed file's old or new rows) is
read again, so the last written row wins exactly as if every file had been read. Content changed
under an unchanged size and mtime is caught by the hash before any daily file is deleted. A file
read again whose rows equal the archive's for each day they fall on (the day digests) leaves the
archive as it is without the archive being read (batch.py).

A manifest is read from disk: every field is checked, anything unexpected means "not trusted".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

import orjson

from trading_maintenance.core.market_data.io import file_stat, write_json_atomic
from trading_maintenance.core.market_data.layout import DailyFile, day_of_name, manifest_fspath, manifest_path

MANIFEST_VERSION = 2
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # a month of daily sources is a few KB
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DAY_DIGEST_KEY = "rows_sha256"  # a day's digest of its archive rows (day_digest.py)
DAY_COUNTS = ("high_below_open_close", "low_above_open_close", "negative_volume", "non_positive_price", "outside_session", "bad_bars", "_in_session")


def load_manifest(archive: str | Path) -> dict | None:
    """The manifest next to an archive, or None when missing, oversized or not a JSON object."""
    try:
        with open(manifest_fspath(archive), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_MANIFEST_BYTES:
                return None
            raw = handle.read(size + 1)  # bounded even when the file grows meanwhile
        if len(raw) > MAX_MANIFEST_BYTES:
            return None
        data = orjson.loads(raw)  # strict (invalid UTF-8, NaN): a JSONDecodeError is a ValueError; ~3x json.loads
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_count(value) -> bool:
    return type(value) is int and value >= 0  # a bool is no count


def has_recorded_hash(entry) -> bool:
    """A source entry with a well-formed SHA-256 (manifests from before hashes have none)."""
    return isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and bool(_SHA256.match(entry["sha256"]))


def _count_fields(entry: dict, keys: tuple[str, ...]) -> bool:
    """Every key of `keys` in entry holds a count (an int >= 0, never a bool)."""
    for k in keys:
        v = entry.get(k)
        if type(v) is not int or v < 0:
            return False
    return True


_SOURCE_COUNTS = ("size", "mtime_ns", "rows", "outside_file_date")


def _valid_source(entry, month: str) -> bool:
    """A well-formed source entry of a daily file of month (checked inline: every manifest of a
    month is checked on each re-run, ~16 entries each)."""
    if type(entry) is not dict:
        return False
    get = entry.get
    sha256, name = get("sha256"), get("name")
    if type(sha256) is not str or not _SHA256.match(sha256) or type(name) is not str or not name.startswith(month):
        return False
    if len(name) != 18 or name[7] != "-" or day_of_name(name) is None:  # YYYY-MM-DD.parquet of month, nothing after
        return False
    size, mtime_ns, rows, outside = get("size"), get("mtime_ns"), get("rows"), get("outside_file_date")
    if type(size) is not int or type(mtime_ns) is not int or type(rows) is not int or type(outside) is not int:
        return False  # a bool is no count
    if size < 0 or mtime_ns < 0 or rows < 0 or outside < 0:
        return False
    first, last = get("first_us"), get("last_us")
    if rows == 0:
        return first is None and last is None
    return type(first) is int and type(last) is int and first <= last


@lru_cache(maxsize=4096)
def _real_iso_date(text: str) -> bool:
    """YYYY-MM-DD naming a real date (cached: a manifest's days repeat across archives)."""
    if not _ISO_DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _valid_day(row) -> bool:
    if type(row) is not dict or not _count_fields(row, DAY_COUNTS):
        return False
    digest = row.get(DAY_DIGEST_KEY)
    if digest is not None and (type(digest) is not str or not _SHA256.match(digest)):
        return False
    ny_date = row.get("ny_date")
    return type(ny_date) is str and len(ny_date) <= 11 and _real_iso_date(ny_date)  # longer never matches: not cached


def trusted_manifest(archive: str | Path, symbol: str, timeframe: str, month: str, calendar_name: str) -> dict | None:
    """The archive's manifest when a re-run may rely on it: this version, for this archive as it is
    on disk now (size and mtime), the same calendar, every source and day entry well formed."""
    manifest = load_manifest(archive)
    if not manifest or manifest.get("version") != MANIFEST_VERSION:
        return None
    if (manifest.get("symbol"), manifest.get("timeframe"), manifest.get("month"), manifest.get("calendar")) != (symbol, timeframe, month, calendar_name):
        return None
    meta = manifest.get("archive")
    try:
        st = os.stat(archive)
    except OSError:
        return None
    current = (st.st_size, st.st_mtime_ns)
    if not isinstance(meta, dict) or (meta.get("size"), meta.get("mtime_ns")) != current or not _is_count(meta.get("rows")):
        return None
    sources, days = manifest.get("sources"), manifest.get("days")
    if not isinstance(sources, list) or not isinstance(days, list):
        return None
    if not all(_valid_source(s, month) for s in sources) or not all(_valid_day(d) for d in days):
        return None
    if len({s["name"] for s in sources}) != len(sources):
        return None
    return manifest


def write_manifest(
    target: Path,
    symbol: str,
    timeframe: str,
    month: str,
    rows: int,
    sources: list[dict],
    calendar_name: str,
    days: list[dict],
    archive_stat: tuple[int, int] | None = None,
) -> None:
    """The manifest of an archive just verified: renamed into place, or kept as it was with
    archive_stat, the (size, mtime_ns) it was verified with (changed since: the manifest is not trusted)."""
    size, mtime_ns = archive_stat or file_stat(target)
    write_json_atomic(
        {
            "version": MANIFEST_VERSION,
            "symbol": symbol,
            "timeframe": timeframe,
            "month": month,
            "archive": {"name": target.name, "size": size, "mtime_ns": mtime_ns, "rows": rows},
            "sources": sorted(sources, key=lambda s: s["name"]),
            "calendar": calendar_name,
            "days": days,
            "verified_at": datetime.now(timezone.utc).isoformat(),
        },
        manifest_path(target),
        # its folder fsync makes a renamed archive durable (a kept archive was made durable when
        # written); the manifest's own bytes need none: a manifest lost or torn by a crash only
        # means "not deletable, re-read next run", and the archive holds every row it vouches for
        fsync_dir=archive_stat is None,
        fsync_file=False,
    )


def forget_sources(archive: Path, names: set[str]) -> None:
    """Drop sources from an archive's manifest (their content changed since): the next run reads
    them again and they are not deletable until then. The archive's own entry is kept as is."""
    manifest = load_manifest(archive)
    if not manifest or not isinstance(manifest.get("sources"), list):
        return
    manifest["sources"] = [s for s in manifest["sources"] if not (isinstance(s, dict) and s.get("name") in names)]
    write_json_atomic(manifest, manifest_path(archive), fsync_file=False)


@dataclass
class SourcePlan:
    """Which of a group's daily files a run reads, and which it reuses from the verified archive."""

    read: list[DailyFile]
    reused: list[tuple[DailyFile, dict]] = field(default_factory=list)  # (file, its manifest entry)
    manifest: dict | None = None  # the trusted manifest of the existing archive, if any

    @property
    def unchanged(self) -> bool:
        """Nothing to read: the archive is verified against every daily file there is."""
        return self.manifest is not None and not self.read

    def widen(self, ranges: list[tuple[int, int]]) -> list[DailyFile]:
        """Move the reused sources whose timestamp range overlaps any of `ranges` (those of the rows
        read, epoch µs), and those overlapping them in turn, to the files read; returns them."""
        moved: list[DailyFile] = []
        ranges = list(ranges)
        while ranges:  # no range read (an unchanged group): nothing overlaps
            overlapping = [
                (f, e) for f, e in self.reused
                if e["rows"] and any(e["first_us"] <= hi and lo <= e["last_us"] for lo, hi in ranges)
            ]
            if not overlapping:
                break
            for f, e in overlapping:
                self.reused.remove((f, e))
                moved.append(f)
                ranges.append((e["first_us"], e["last_us"]))
        if moved:
            self.read = sorted([*self.read, *moved], key=_writing_order)
        return moved


def _writing_order(f: DailyFile) -> tuple:
    return (f.day, f.name)


def plan_sources(archive: str | Path, files: list[DailyFile], symbol: str, timeframe: str, month: str, calendar_name: str) -> SourcePlan:
    """Read what is new or changed since the archive was verified (and whatever overlaps the old
    rows of a changed file); reuse the rest. Without a trusted manifest, read everything."""
    ordered = sorted(files, key=_writing_order)
    manifest = trusted_manifest(archive, symbol, timeframe, month, calendar_name)  # None without an archive
    if manifest is None:
        return SourcePlan(ordered)
    entries = {s["name"]: s for s in manifest["sources"]}
    plan = SourcePlan([], [], manifest)
    changed_ranges = []
    for f in ordered:
        entry = entries.get(f.name)
        try:
            # the listing's stat when it has one (the file is compared as it was listed)
            same = entry is not None and (f.listed_stat or file_stat(f.path)) == (entry["size"], entry["mtime_ns"])
        except OSError:
            same = False
        if same:
            plan.reused.append((f, entry))
            continue
        plan.read.append(f)
        if entry is not None and entry["rows"]:  # its old rows are in the archive: what they overlapped is read again
            changed_ranges.append((entry["first_us"], entry["last_us"]))
    plan.widen(changed_ranges)
    return plan
