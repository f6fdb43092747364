"""Performance: measurements (Redis memory, largest keys, database sessions, disk, network) and
recommendations; plus the safe resource actions (maintenance list caps, MEMORY PURGE).

No Dagster here. Every measurement says where it came from; a measurement that could not be taken
is reported as unavailable with the reason, never invented.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import text

from trading_maintenance.core.hygiene.failures import cause_of


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --- Redis -------------------------------------------------------------------------------------


def largest_keys(client, sample: int, top: int = 10, scan_count: int = 500) -> tuple[list[dict], int]:
    """The biggest keys by MEMORY USAGE among up to `sample` keys found with SCAN; (top, sampled)."""
    heap: list[tuple[int, str]] = []
    sampled = 0
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.execute_command("MEMORY", "USAGE", key)
        for key, usage in zip(batch, pipe.execute(raise_on_error=False)):
            if isinstance(usage, int):
                item = (usage, key)
                if len(heap) < top:
                    heapq.heappush(heap, item)
                else:
                    heapq.heappushpop(heap, item)
        batch.clear()

    for key in client.scan_iter(count=scan_count):
        batch.append(_text(key))
        sampled += 1
        if len(batch) >= 200:
            flush()
        if sampled >= sample:
            break
    if batch:
        flush()
    return [{"key": k, "bytes": b} for b, k in sorted(heap, reverse=True)], sampled


def cache_keys_without_ttl(client, namespaces: list[str], scan_count: int = 500, limit: int = 1_000_000) -> int:
    """Keys in the cache namespaces that have no TTL (SCAN + pipelined TTL), counting up to `limit`."""
    count = seen = 0
    for namespace in namespaces:
        batch: list = []
        for key in client.scan_iter(match=namespace + "*", count=scan_count):
            batch.append(key)
            seen += 1
            if len(batch) >= scan_count or seen >= limit:
                pipe = client.pipeline(transaction=False)
                for k in batch:
                    pipe.ttl(k)
                count += sum(1 for t in pipe.execute() if t == -1)
                batch = []
            if seen >= limit:
                return count
        if batch:
            pipe = client.pipeline(transaction=False)
            for k in batch:
                pipe.ttl(k)
            count += sum(1 for t in pipe.execute() if t == -1)
    return count


# --- database ----------------------------------------------------------------------------------


@dataclass
class IdleSession:
    pid: int
    user: str
    application: str
    idle_seconds: float
    state: str
    terminated: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def database_sessions(engine, idle_limit_seconds: float, terminate: bool, dry_run: bool) -> dict:
    """PostgreSQL: sessions by state and idle-in-transaction sessions older than the limit
    (terminated only when configured and not a dry run). SQLite: not applicable."""
    if engine.dialect.name != "postgresql":
        return {"available": False, "reason": f"{engine.dialect.name}: no server sessions to inspect", "by_state": {}, "idle_in_transaction": []}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(state, ''), "
                "extract(epoch FROM (now() - coalesce(state_change, now()))) "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
        by_state = Counter(r[3] or "unknown" for r in rows)
        idle = [
            IdleSession(int(r[0]), r[1], r[2], float(r[4]), r[3])
            for r in rows
            if r[3] in ("idle in transaction", "idle in transaction (aborted)") and float(r[4]) > idle_limit_seconds
        ]
        if terminate and not dry_run:
            for session in idle:
                session.terminated = bool(conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session.pid}).scalar())
            conn.commit()
    return {"available": True, "reason": "", "by_state": dict(by_state), "idle_in_transaction": [s.as_dict() for s in idle]}


# --- disk --------------------------------------------------------------------------------------


def folder_sizes(root: str | Path, depth: int = 2) -> list[dict]:
    """Bytes and files per folder under root (to `depth` levels), symlinks never followed."""
    root = Path(root)
    totals: Counter = Counter()
    counts: Counter = Counter()
    if not root.is_dir():
        return []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root)
        parts = rel.parts[:depth]
        size = 0
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += st.st_size
        for i in range(1, len(parts) + 1):
            key = "/".join(parts[:i])
            totals[key] += size
            counts[key] += len(filenames)
    return [{"folder": k, "bytes": v, "files": counts[k]} for k, v in totals.most_common()]


def inode_usage(path: str | Path) -> dict:
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return {"available": False, "reason": cause_of(exc)}
    if not st.f_files:
        return {"available": False, "reason": "filesystem reports no inode counts"}
    used = st.f_files - st.f_ffree
    return {"available": True, "inodes_total": st.f_files, "inodes_used": used, "inode_percent": round(100 * used / st.f_files, 2)}


# --- network -----------------------------------------------------------------------------------


def network_connections() -> dict:
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError) as exc:
        return {"available": False, "reason": cause_of(exc), "by_state": {}}
    return {"available": True, "reason": "", "by_state": dict(Counter(c.status for c in conns)), "total": len(conns)}


# --- recommendations ---------------------------------------------------------------------------


def recommendations(report: dict, fragmentation_threshold: float = 1.5, idle_limit_minutes: int = 10) -> list[str]:
    """Plain sentences a person can act on, each backed by a number in the report."""
    out: list[str] = []
    redis = report.get("redis", {})
    memory = redis.get("memory", {})
    ratio = memory.get("mem_fragmentation_ratio", 0)
    excess = memory.get("used_memory_rss", 0) - memory.get("used_memory", 0)
    if ratio > fragmentation_threshold and excess > 10 * 1024 * 1024:
        out.append(
            f"Redis fragmentation is {ratio:.2f} ({excess // (1024 * 1024)} MB over used memory): run resource_optimization "
            "(MEMORY PURGE) or enable activedefrag."
        )
    if memory.get("maxmemory", 0) == 0 and memory.get("used_memory", 0) > 512 * 1024 * 1024:
        out.append("Redis has no maxmemory set while using over 512 MB: set maxmemory and an eviction policy for caches.")
    no_ttl = redis.get("cache_keys_without_ttl")
    if no_ttl:
        out.append(f"{no_ttl} cache keys have no TTL: run cache_cleanup and make the writers set TTLs.")
    for item in redis.get("largest_keys", [])[:3]:
        if item["bytes"] > 50 * 1024 * 1024:
            out.append(f"Redis key {item['key']} uses {item['bytes'] // (1024 * 1024)} MB: split it or move it out of Redis.")
    db = report.get("database", {})
    idle = db.get("idle_in_transaction", [])
    if idle:
        terminated = sum(1 for s in idle if s.get("terminated"))
        out.append(
            f"{len(idle)} database sessions idle in transaction for over {idle_limit_minutes} min "
            f"({terminated} terminated): fix the application that leaves transactions open, or set idle_in_transaction_session_timeout."
        )
    disk = report.get("disk", {})
    if disk.get("disk_percent", 0) >= 85:
        out.append(f"Disk holding the data root is {disk['disk_percent']}% full: run data_cleanup and review retention settings.")
    inodes = disk.get("inodes", {})
    if inodes.get("available") and inodes.get("inode_percent", 0) >= 80:
        out.append(f"Inodes {inodes['inode_percent']}% used: many small files; consolidate market data into monthly archives.")
    folders = disk.get("largest_folders", [])
    if folders and disk.get("data_bytes"):
        top = folders[0]
        share = top["bytes"] / max(1, disk["data_bytes"])
        if share > 0.5 and top["bytes"] > 1024**3:
            out.append(f"{top['folder']} holds {share:.0%} of the data root ({top['bytes'] // 1024**3} GB): check its retention.")
    net = report.get("network", {})
    states = net.get("by_state", {})
    if states.get("TIME_WAIT", 0) > 1000:
        out.append(f"{states['TIME_WAIT']} connections in TIME_WAIT: reuse HTTP/Redis/database connections (pooling).")
    if states.get("CLOSE_WAIT", 0) > 50:
        out.append(f"{states['CLOSE_WAIT']} connections in CLOSE_WAIT: a service is not closing sockets; restart it and check its client code.")
    return out


# --- resource actions --------------------------------------------------------------------------


@dataclass
class ListTrim:
    key: str
    length: int
    cap: int
    removed: int = 0
    status: str = "planned"  # planned / trimmed / within_cap / wrong_type / error

    def as_dict(self) -> dict:
        return asdict(self)


def plan_list_trims(client, caps: dict[str, int], default_cap: int, scan_count: int = 500) -> tuple[list[ListTrim], list[dict]]:
    """maintenance:* lists longer than their cap (configured per key, else the default)."""
    trims, skipped = [], []
    for raw in client.scan_iter(match="maintenance:*", count=scan_count):
        key = _text(raw)
        key_type = _text(client.type(key))
        if key_type != "list":
            if key in caps:
                skipped.append({"key": key, "reason": f"unexpected type {key_type} (expected list); skipped"})
            continue
        length = int(client.llen(key))
        cap = int(caps.get(key, default_cap))
        if length > cap:
            trims.append(ListTrim(key, length, cap, length - cap))
    return sorted(trims, key=lambda t: t.key), skipped


def apply_list_trims(client, trims: list[ListTrim]) -> None:
    """LTRIM keeps the newest `cap` entries (the lists are LPUSHed: newest first)."""
    for trim in trims:
        try:
            pipe = client.pipeline(transaction=True)
            pipe.llen(trim.key)
            pipe.ltrim(trim.key, 0, trim.cap - 1)
            pipe.llen(trim.key)
            before, _ok, after = pipe.execute()
            trim.removed = max(0, int(before) - int(after))
            trim.status = "trimmed"
        except Exception as exc:  # noqa: BLE001
            trim.status = f"error: {cause_of(exc)}"
