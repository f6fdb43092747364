"""Reading, normalising and quarantining market-data files; crash-safe temporary files.

Old schemas are normalised (missing asset_type -> null, timestamps in ns or without zone -> us UTC,
numeric types cast); a file that cannot be read or normalised raises UnreadableFile, whose message
is the quarantine reason. A temporary file is `.{name}.{pid}.tmp` in the target's folder; one left
by a crashed writer is removed by the next writer of that name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import _parquet as _pyarrow_parquet

from trading_maintenance.core.common.atomic import fsync_dir as _fsync_dir
from trading_maintenance.core.market_data.layout import SCHEMA, manifest_path

_SCHEMA_ITEMS = list(SCHEMA.items())


class UnreadableFile(Exception):
    """A file that cannot be read or normalised; the message is the quarantine reason."""


def normalise(df: pl.DataFrame, symbol: str | None = None, timeframe: str | None = None) -> tuple[pl.DataFrame, list[str]]:
    """The contract's columns and types. Returns (frame, notes on what was normalised).

    Fixes only representation (types, zone, a missing optional column); never values. Raises
    UnreadableFile when a required column is missing or a value cannot be converted.
    """
    if df.schema == SCHEMA:
        return df, []
    notes: list[str] = []
    missing = [c for c in ("timestamp", "open", "high", "low", "close") if c not in df.columns]
    if missing:
        raise UnreadableFile(f"required column(s) missing: {', '.join(missing)}")
    exprs = []
    for name, dtype in SCHEMA.items():
        if name not in df.columns:
            if name == "symbol" and symbol is not None:
                exprs.append(pl.lit(symbol, pl.String).alias(name))
            elif name == "timeframe" and timeframe is not None:
                exprs.append(pl.lit(timeframe, pl.String).alias(name))
            else:
                exprs.append(pl.lit(None, dtype).alias(name))
            notes.append(f"missing column {name} added")
            continue
        current = df.schema[name]
        if current == dtype:
            exprs.append(pl.col(name))
            continue
        notes.append(f"{name}: {current} -> {dtype}")
        if name == "timestamp":
            if isinstance(current, pl.Datetime):
                col = pl.col(name)
                col = col.dt.replace_time_zone("UTC") if current.time_zone is None else col.dt.convert_time_zone("UTC")
                exprs.append(col.dt.cast_time_unit("us").alias(name))
            elif current in (pl.Int64, pl.UInt64, pl.Int32):
                # epoch numbers: guess the unit from magnitude (ns ~1e18, us ~1e15, ms ~1e12, s ~1e9)
                exprs.append(pl.col(name))  # handled below
            elif current == pl.String:
                exprs.append(pl.col(name).str.to_datetime(time_zone="UTC", strict=True).dt.cast_time_unit("us").alias(name))
            else:
                raise UnreadableFile(f"timestamp of type {current} cannot be read as a time")
        else:
            exprs.append(pl.col(name).cast(dtype, strict=True).alias(name))
    try:
        out = df.select(exprs)
        if out.schema["timestamp"] != SCHEMA["timestamp"]:
            sample = out["timestamp"].drop_nulls().abs().max() or 0
            unit = "ns" if sample > 1e17 else "us" if sample > 1e14 else "ms" if sample > 1e11 else "s"
            out = out.with_columns(
                pl.from_epoch(pl.col("timestamp"), time_unit=unit).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
            )
            notes.append(f"timestamp: epoch {unit} -> datetime")
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
        raise UnreadableFile(f"cannot normalise: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return out, notes


def read_market_file(path: str | Path, symbol: str | None = None, timeframe: str | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Read and normalise one parquet file; UnreadableFile when it is truncated, corrupt or unusable."""
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars/arrow raise many kinds for corrupt files
        raise UnreadableFile(f"unreadable parquet: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    return normalise(df, symbol, timeframe)


def quarantine_file(path: Path, market_data_dir: Path, quarantine_dir: Path, reason: str) -> Path:
    """Move a bad file under quarantine_dir (same relative path, never overwriting) with a reason file."""
    try:
        rel = path.relative_to(market_data_dir)
    except ValueError:
        rel = Path(path.name)
    target = quarantine_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        target = target.with_name(f"{target.stem}.{int(time.time() * 1000)}{target.suffix}")
    reason_file = target.with_name(target.name + ".reason.txt")
    reason_file.write_text(
        f"source: {path}\nquarantined_at: {datetime.now(timezone.utc).isoformat()}\nreason: {reason}\n"
    )
    shutil.move(str(path), str(target))
    return target


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


STALE_TMP_SECONDS = 3600


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover (this process writes each name once at a time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def stale_tmp(folder: Path, *names: str) -> list[Path]:
    """Temporary files (tmp_name) left by a crashed writer of any of `names` in folder: its process
    is gone, or the file is over an hour old. A live concurrent writer's file is not one."""
    prefixes = tuple(f".{name}." for name in names)
    found = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if not (entry.name.startswith(prefixes) and entry.name.endswith(".tmp")):
            continue
        prefix = next(p for p in prefixes if entry.name.startswith(p))
        pid_text = entry.name[len(prefix):-4]
        try:
            stale = not (pid_text.isdigit() and _pid_alive(int(pid_text))) or now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
        except FileNotFoundError:
            continue
        if stale:
            found.append(Path(entry.path))
    return found


def remove_stale_tmp(folder: Path, name: str) -> list[Path]:
    """Remove stale_tmp(folder, name); returns what was removed."""
    removed = stale_tmp(folder, name)
    for entry in removed:
        entry.unlink(missing_ok=True)
    return removed


def find_stale_temporaries(archive_dir: str | Path, month: str) -> list[Path]:
    """Every temporary name a consolidation of month writes (its archives' and manifests') that a
    crashed writer left in the archive tree."""
    root = Path(archive_dir)
    names = (f"{month}.parquet", manifest_path(Path(f"{month}.parquet")).name)
    found: list[Path] = []
    if not root.is_dir():
        return found
    for sym_entry in os.scandir(root):
        if not sym_entry.is_dir(follow_symlinks=False):
            continue
        for tf_entry in os.scandir(sym_entry.path):
            if not tf_entry.is_dir(follow_symlinks=False):
                continue
            try:
                entries = os.listdir(tf_entry.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            # the closer look (whose file, how old) only in a folder that holds a temporary file:
            # a re-run looks at hundreds of folders, almost always without one
            if any(entry.endswith(".tmp") for entry in entries):
                found.extend(stale_tmp(Path(tf_entry.path), *names))
    return sorted(found)


def write_json_atomic(data: dict, path: Path, fsync_dir: bool = True, fsync_file: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path.parent, path.name)
    tmp = tmp_name(path)
    try:
        # orjson: the same bytes as json.dumps(separators=(',', ':')) for a manifest, in a tenth of the
        # time, which holds the GIL (a month writes hundreds of manifests)
        encoded = orjson.dumps(data, default=str)
        with open(tmp, "wb") as handle:
            handle.write(encoded)
            handle.flush()
            if fsync_file:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync_dir:
        _fsync_dir(path.parent)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes: what tells a file rewritten in place with the same size and
    mtime from the one an archive was verified against."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


MAX_BUFFERED_FILE_BYTES = 512 * 1024 * 1024  # a larger file is read by path (the careful path), never held whole


class ChangedWhileReading(OSError):
    """A file whose size or mtime changed while it was read: what was read may be neither version."""


def read_whole(path: str | Path) -> tuple[bytes, tuple[int, int]]:
    """A regular file's bytes with the (size, mtime_ns) they were read at, from one open: the
    stat, the hash and the rows decoded from these bytes all describe the same content (a rename
    over the name meanwhile leaves this open file as it was; a rewrite in place raises
    ChangedWhileReading). Files over MAX_BUFFERED_FILE_BYTES raise ValueError."""
    with open(path, "rb", buffering=0) as handle:  # unbuffered: one read into one bytes object
        fd = handle.fileno()
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise ValueError(f"not a regular file: {path}")
        if before.st_size > MAX_BUFFERED_FILE_BYTES:
            raise ValueError(f"too large to read whole: {before.st_size} bytes")
        parts = []
        remaining = before.st_size + 1  # one byte more than expected: a file that grew is noticed
        while remaining > 0:
            part = handle.read(remaining)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        after = os.fstat(fd)
    if len(data) != before.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ChangedWhileReading(f"{path} changed while it was read")
    return data, (before.st_size, before.st_mtime_ns)


def bytes_sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes read whole: equal to file_sha256 of the file they were read from."""
    return hashlib.sha256(data).hexdigest()


class FooterError(ValueError):
    """A parquet footer whose row counts cannot be relied on."""


_PARQUET_MAGIC = b"PAR1"
# pyarrow's parser of a serialized FileMetaData (what unpickling one uses): the footer parsed by
# pyarrow's own Thrift reader without a ParquetFile around it, whose construction (schema paths
# built in Python, under the GIL) is half the cost of a footer read: ~16 vs ~35 us per file,
# ~0.25 CPU s over --large's 13,400 reads. Without it, pq.read_metadata as before.
_parse_file_metadata = getattr(_pyarrow_parquet, "_reconstruct_filemetadata", None)


def _file_metadata(data: bytes) -> pq.FileMetaData:
    """The FileMetaData of a parquet file read whole. The footer's length is bounded by the file
    (magic at both ends, at least one byte of footer) before pyarrow parses what it points at."""
    if _parse_file_metadata is None:
        return pq.read_metadata(pa.BufferReader(data))
    size = len(data)
    if size < 12 or data[:4] != _PARQUET_MAGIC or data[-4:] != _PARQUET_MAGIC:
        raise FooterError("not a parquet file (no PAR1 at both ends)")
    length = int.from_bytes(data[-8:-4], "little")
    if not 0 < length <= size - 12:
        raise FooterError(f"footer length {length} does not fit a file of {size} bytes")
    return _parse_file_metadata(pa.py_buffer(memoryview(data)[size - 8 - length:size - 8]))


def parquet_footer(data: bytes) -> tuple[int, pq.FileMetaData]:
    """(rows, footer) of a parquet file read whole: rows as parquet_row_count counts them."""
    meta = _file_metadata(data)
    rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    if rows != meta.num_rows:
        raise FooterError(f"row groups hold {rows} rows, the file says {meta.num_rows}")
    return rows, meta


def parquet_row_count(data: bytes) -> int:
    """Rows of a parquet file read whole, from its footer: the sum of its row groups' counts (what
    a reader decodes), required to equal the file's own count. A footer whose counts disagree is
    refused: with the file's count alone, two files lying in opposite directions would add up to
    the rows decoded and each row be credited to the wrong file."""
    return parquet_footer(data)[0]


def scan_buffers(buffers: list[bytes]) -> tuple[pl.DataFrame, list[int]] | None:
    """Several parquet files, read whole (read_whole), decoded in one scan, with the row count of
    each from its own footer (None unless every file is in the current schema and the counts add
    up to the rows decoded).

    The same as scan_runs on the files' paths, for about half the CPU: a scan of paths costs
    per-file opening and path bookkeeping that in-memory sources do not. Multi-source scans
    concatenate sources in the order given, so each file's rows are one run in order, as long as
    its footer's row groups hold (parquet_row_count)."""
    if not buffers:
        return None
    lengths = [parquet_row_count(b) for b in buffers]
    df = pl.scan_parquet(buffers).collect()
    if list(df.schema.items()) != _SCHEMA_ITEMS or df.height != sum(lengths):
        return None
    return df, lengths


def scan_runs(paths: list[str]) -> tuple[pl.DataFrame, list[int]] | None:
    """Several parquet files in one scan, with the row count of each (None unless every file is
    readable, in the current schema, and its rows come back as one contiguous run in file order)."""
    df = pl.scan_parquet(paths, include_file_paths="_path").collect()
    if list(df.schema.items())[:-1] != _SCHEMA_ITEMS:
        return None
    runs = df["_path"].rle().struct.unnest()
    run_paths, run_lengths = runs["value"].to_list(), runs["len"].to_list()
    counts = dict(zip(run_paths, run_lengths))
    if len(counts) != len(run_paths) or [p for p in paths if p in counts] != run_paths:
        return None
    df.drop_in_place("_path")  # in place: drop() re-plans the frame, one chunk per file (~2 ms per 300 files)
    return df, [int(counts.get(p, 0)) for p in paths]

