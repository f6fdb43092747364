"""Log rotation by rename: `x.log` -> `x.log.1` -> `x.log.2` ... kept per log, old ones gzipped.

Why rename and never copy-and-truncate: a writer appending with O_APPEND keeps writing into the
same inode after a rename, so nothing is lost whether it reopens its path (WatchedFileHandler: its
next line goes to a fresh `x.log`) or never does (its lines keep landing in `x.log.1`). Copy-then-
truncate loses whatever is written between the copy and the truncate.

Rules
- Only `*.log` files directly in the logs folder over `max_bytes` rotate; symlinks never.
- The whole chain is checked before anything is renamed: a log whose chain holds anything but a
  regular file (a folder `x.log.2/`, a symlink, a fifo) is left alone and reported, and when it was
  due for rotation the task fails.
- Temporary names (`*.tmp`, ...) are never logs; a gzip temporary whose process is gone is removed.
- The existing chain shifts from the highest index down (each rename has a vacant target), then
  `x.log` becomes `x.log.1` and an empty `x.log` is created (O_APPEND, never truncating).
- Per log at most `keep` rotated files stay; higher indices are deleted unless a process holds them.
- Rotated files older than `compress_after` are gzipped, never the newest (`.1`) and never one a
  process holds open; the gzip keeps the original mtime.
The plan is a list of operations; applying re-checks each one.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trading_maintenance.core.hygiene.compression import dead_gzip_temporary, gzip_file
from trading_maintenance.core.hygiene.file_names import is_temporary_name
from trading_maintenance.core.hygiene.open_files import is_held

_ROTATED = re.compile(r"^(?P<base>.+\.log)\.(?P<n>[1-9]\d*)(?P<gz>\.gz)?$")


@dataclass
class LogOp:
    action: str  # rename / create / delete / compress / skip
    path: str
    target: str = ""
    bytes: int = 0
    reason: str = ""
    log: str = ""
    mode: int = 0o644  # create: the rotated log's permission bits

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RotationPlan:
    logs_dir: str
    max_bytes: int
    keep: int
    ops: list[LogOp] = field(default_factory=list)
    notes: list[LogOp] = field(default_factory=list)  # skipped with reasons
    blocked: list[LogOp] = field(default_factory=list)  # due for rotation but left alone: a failure

    @property
    def rotated_logs(self) -> list[str]:
        return sorted({op.log for op in self.ops if op.action == "rename" and op.path.endswith(".log")})

    def count(self, action: str) -> int:
        return sum(1 for op in self.ops if op.action == action)

    def bytes_of(self, action: str) -> int:
        return sum(op.bytes for op in self.ops if op.action == action)


def rotated_chain(log_path: str) -> dict[int, list[str]]:
    """Index -> paths of `log.N` and/or `log.N.gz` beside the log (both can exist after a crash),
    whatever kind of entry they are."""
    folder, base = os.path.split(log_path)
    chain: dict[int, list[str]] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return chain
    for name in names:
        match = _ROTATED.match(name)
        if not match or match["base"] != base:
            continue
        chain.setdefault(int(match["n"]), []).append(os.path.join(folder, name))
    return chain


def _entry_kind(st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISFIFO(st.st_mode):
        return "a fifo"
    if stat.S_ISSOCK(st.st_mode):
        return "a socket"
    return "not a regular file"


def _with_index(log_path: str, index: int, gz: bool) -> str:
    return f"{log_path}.{index}" + (".gz" if gz else "")


def plan_rotation(
    logs_dir: str | Path,
    max_bytes: int,
    keep: int,
    now: float,
    compress_after_seconds: float | None,
    open_ids: set[tuple[int, int]] | None = None,
) -> RotationPlan:
    logs_dir = Path(logs_dir)
    plan = RotationPlan(str(logs_dir), max_bytes, keep)
    if not logs_dir.is_dir() or os.path.islink(logs_dir):
        if os.path.islink(logs_dir):
            plan.notes.append(LogOp("skip", str(logs_dir), reason="logs folder is a symlink (never followed)"))
        return plan
    names = sorted(os.listdir(logs_dir))
    for name in names:
        reason = dead_gzip_temporary(str(logs_dir / name))
        if reason and os.path.isfile(logs_dir / name) and not os.path.islink(logs_dir / name):
            plan.ops.append(LogOp("remove_temp", str(logs_dir / name), bytes=os.lstat(logs_dir / name).st_size, reason=reason))
    for name in names:
        if not name.endswith(".log") or is_temporary_name(name):
            continue
        log_path = str(logs_dir / name)
        try:
            st = os.lstat(log_path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            plan.notes.append(LogOp("skip", log_path, reason="symlink (never followed)", log=name))
            continue
        if not stat.S_ISREG(st.st_mode):
            plan.notes.append(LogOp("skip", log_path, reason=f"{_entry_kind(st)}, not a log file; left alone", log=name))
            continue
        chain = rotated_chain(log_path)
        rotate = st.st_size > max_bytes
        chain_stats: dict[str, os.stat_result] = {}
        odd = []
        for index in chain:
            for src in chain[index]:
                try:
                    chain_stats[src] = os.lstat(src)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(chain_stats[src].st_mode):
                    odd.append(src)
        if odd:
            for src in odd:
                plan.notes.append(LogOp("skip", src, reason=f"{_entry_kind(chain_stats[src])} in the rotation chain of {name}; left alone", log=name))
            if rotate:
                names_odd = ", ".join(os.path.basename(p) for p in odd)
                plan.blocked.append(LogOp("blocked", log_path, bytes=st.st_size, log=name,
                                          reason=f"over {max_bytes} bytes but not rotated: {names_odd} is not a regular file; nothing renamed"))
            continue
        # after: (index, path after this run, size, mtime) of every rotated file
        after: list[tuple[int, str, int, float]] = []
        for index in sorted(chain, reverse=True):
            for src in chain[index]:
                sst = chain_stats.get(src)
                if sst is None:
                    continue
                if rotate:
                    dst = _with_index(log_path, index + 1, src.endswith(".gz"))
                    plan.ops.append(LogOp("rename", src, dst, sst.st_size, "shift", name))
                    after.append((index + 1, dst, sst.st_size, sst.st_mtime))
                else:
                    after.append((index, src, sst.st_size, sst.st_mtime))
        if rotate:
            plan.ops.append(LogOp("rename", log_path, _with_index(log_path, 1, False), st.st_size, f"over {max_bytes} bytes", name))
            plan.ops.append(LogOp("create", log_path, reason="fresh empty log for writers that reopen", log=name, mode=stat.S_IMODE(st.st_mode)))
            after.append((1, _with_index(log_path, 1, False), st.st_size, st.st_mtime))
        for index, path, size, mtime in sorted(after):
            # a file keeps its inode through renames: "held" is checked on the file as it is now
            current = next((op.path for op in plan.ops if op.action == "rename" and op.target == path), path)
            held_now = is_held(current, open_ids)
            if index > keep:
                if held_now:
                    plan.notes.append(LogOp("skip", path, reason=f"beyond {keep} kept but held open by a process; kept", log=name))
                else:
                    plan.ops.append(LogOp("delete", path, bytes=size, reason=f"beyond the {keep} rotated files kept", log=name))
                continue
            if compress_after_seconds is None or path.endswith(".gz") or index == 1 or os.path.lexists(path + ".gz"):
                continue
            if now - mtime > compress_after_seconds:
                if held_now:
                    plan.notes.append(LogOp("skip", path, reason="held open by a process; not compressed", log=name))
                else:
                    plan.ops.append(LogOp("compress", path, path + ".gz", size, "older than the compression age", name))
    return plan


@dataclass
class RotationOutcome:
    done: list[LogOp] = field(default_factory=list)
    failed: list[tuple[LogOp, str]] = field(default_factory=list)
    bytes_freed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, action: str) -> int:
        return sum(1 for op in self.done if op.action == action)


def apply_rotation(plan: RotationPlan, open_ids: set[tuple[int, int]] | None = None) -> RotationOutcome:
    """Apply the plan in order; a log whose step fails gets no further steps this run."""
    outcome = RotationOutcome()
    broken: set[str] = set()
    for op in plan.ops:
        if op.log in broken:
            outcome.failed.append((op, "an earlier step for this log failed; not attempted"))
            continue
        try:
            if op.action == "rename":
                if os.path.lexists(op.target):
                    raise FileExistsError(f"{os.path.basename(op.target)} already exists")
                if not stat.S_ISREG(os.lstat(op.path).st_mode):
                    raise RuntimeError(f"{os.path.basename(op.path)} is no longer a regular file; not renamed")
                os.rename(op.path, op.target)
            elif op.action == "create":
                fd = os.open(op.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, op.mode)
                try:
                    os.fchmod(fd, op.mode)  # same permissions as the log it replaces (umask aside)
                finally:
                    os.close(fd)
            elif op.action == "delete":
                if is_held(op.path, open_ids):
                    raise RuntimeError("held open by a process; kept")
                os.unlink(op.path)
                outcome.bytes_freed += op.bytes
            elif op.action == "remove_temp":
                if dead_gzip_temporary(op.path) is None or is_held(op.path, open_ids):
                    continue  # its writer is alive after all
                os.unlink(op.path)
                outcome.bytes_freed += op.bytes
            elif op.action == "compress":
                result = gzip_file(op.path, None, open_ids)
                if not result.ok:
                    raise RuntimeError(result.reason)
                outcome.bytes_freed += result.bytes_before - result.bytes_after
            outcome.done.append(op)
        except (OSError, RuntimeError) as exc:
            outcome.failed.append((op, f"{type(exc).__name__}: {exc}"))
            if op.action in ("rename", "create"):
                broken.add(op.log)
        if op.action == "rename":
            folder = os.path.dirname(op.path)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return outcome


def verify_rotation(plan: RotationPlan, outcome: RotationOutcome) -> list[str]:
    """After acting: every path the applied steps should have produced exists, every path they
    removed (deleted, compressed, renamed away and not recreated) is gone."""
    present: dict[str, bool] = {}
    for op in outcome.done:
        if op.action == "rename":
            present[op.path] = False
            present[op.target] = True
        elif op.action == "create":
            present[op.path] = True
        elif op.action in ("delete", "remove_temp"):
            present[op.path] = False
        elif op.action == "compress":
            present[op.path] = False
            present[op.target] = True
    problems = []
    for path, should_exist in sorted(present.items()):
        if path.endswith(".log") and not should_exist:
            continue  # a writer that reopens may have recreated the live log already
        exists = os.path.lexists(path)
        if should_exist and not exists:
            problems.append(f"{path} missing after rotation")
        elif not should_exist and exists:
            problems.append(f"{path} still present after rotation")
    return problems


def load_state(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def updated_state(state: dict, outcome: RotationOutcome, now_iso: str) -> dict:
    """Per log: when it last rotated and how many times (written atomically by the caller)."""
    new = {k: dict(v) for k, v in state.get("logs", {}).items() if isinstance(v, dict)}
    for op in outcome.done:
        if op.action == "rename" and op.path.endswith(".log"):
            entry = new.setdefault(op.log, {"rotations": 0})
            entry["rotations"] = int(entry.get("rotations", 0)) + 1
            entry["last_rotated_at"] = now_iso
            entry["last_rotated_bytes"] = op.bytes
    return {"logs": new, "updated_at": now_iso}
