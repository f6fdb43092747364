"""Redis cache hygiene: TTLs for cache keys, idle cache keys, orphaned keys, memory.

Works on a redis-py client (no Dagster). Keys are found with SCAN (never KEYS). The plan is a list
of actions; applying runs each as a small Lua script that re-checks the condition the plan saw,
so a key written or given a TTL in between is left alone.

Rules
- Cache namespaces (`price_cache:`, `screener_cache:`, `cache:`, `temp:`, `session:` by default):
  a key of one of the five data types without a TTL gets the default TTL, or is deleted when
  OBJECT IDLETIME says it was idle longer than the limit. Other types (stream, module types) are
  reported and skipped.
- `ticker_last_seen:{SYMBOL}` (a string) is orphaned when SYMBOL is not in the `active_tickers`
  set. A missing or wrongly typed `active_tickers` disables the rule (reported): an empty
  collector state must not wipe every key.
- `orders:pending:{client_order_id}` (a hash) is orphaned when the database has that order in a
  final status (filled, cancelled, rejected, expired). Orders unknown to the database stay.
- Protected keys (`trading:emergency_stop`, `config:*`, `circuit:*`) and everything outside the
  namespaces and orphan rules are never touched, even if a namespace is misconfigured to cover them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

CACHE_TYPES = {"string", "hash", "list", "set", "zset"}
PROTECTED_PREFIXES = ("config:", "circuit:")
PROTECTED_KEYS = {"trading:emergency_stop"}
FINAL_ORDER_STATUSES = {"filled", "cancelled", "canceled", "rejected", "expired"}
TICKER_PREFIX = "ticker_last_seen:"
PENDING_PREFIX = "orders:pending:"
ACTIVE_TICKERS = "active_tickers"


def is_protected(key: str) -> bool:
    return key in PROTECTED_KEYS or key.startswith(PROTECTED_PREFIXES) or key.startswith("maintenance:")


@dataclass
class KeyAction:
    key: str
    action: str  # set_ttl / delete_idle / delete_orphan
    key_type: str
    category: str  # namespace or orphan rule
    reason: str
    ttl: int = 0
    idle_seconds: int | None = None
    idle_limit: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CachePlan:
    actions: list[KeyAction] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {key, reason}
    scanned: dict[str, int] = field(default_factory=dict)  # category -> keys seen
    rules_disabled: list[str] = field(default_factory=list)

    def count(self, action: str, category: str | None = None) -> int:
        return sum(1 for a in self.actions if a.action == action and (category is None or a.category == category))


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def scan_keys(client, pattern: str, count: int) -> Iterable[str]:
    for key in client.scan_iter(match=pattern, count=count):
        yield _text(key)


def _glob_escape(prefix: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)


def _describe_keys(client, keys: list[str]) -> list[tuple[str, int | None, str, int]]:
    """(key, idle seconds or None, type, ttl) for each key; IDLETIME first so nothing touches it."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.object("idletime", key)
        pipe.type(key)
        pipe.ttl(key)
    raw = pipe.execute(raise_on_error=False)
    out = []
    for i, key in enumerate(keys):
        idle, key_type, ttl = raw[3 * i : 3 * i + 3]
        idle_value = idle if isinstance(idle, int) else None
        out.append((key, idle_value, _text(key_type) if not isinstance(key_type, Exception) else "unknown", ttl if isinstance(ttl, int) else -2))
    return out


def _batches(iterable: Iterable[str], size: int):
    batch: list[str] = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def plan_cache_cleanup(
    client,
    namespaces: list[str],
    default_ttl: int,
    idle_limit: int,
    scan_count: int = 500,
    final_status_of: Callable[[list[str]], dict[str, str]] | None = None,
) -> CachePlan:
    plan = CachePlan()
    for namespace in namespaces:
        if not namespace:
            continue
        seen = 0
        for batch in _batches(scan_keys(client, _glob_escape(namespace) + "*", scan_count), scan_count):
            for key, idle, key_type, ttl in _describe_keys(client, batch):
                seen += 1
                if is_protected(key):
                    plan.skipped.append({"key": key, "reason": "protected key; never touched"})
                    continue
                if ttl == -2 or key_type == "none":
                    continue  # expired or deleted meanwhile
                if key_type not in CACHE_TYPES:
                    plan.skipped.append({"key": key, "reason": f"unexpected type {key_type}; skipped"})
                    continue
                if ttl >= 0:
                    continue
                if idle is not None and idle > idle_limit:
                    plan.actions.append(
                        KeyAction(key, "delete_idle", key_type, namespace, f"no TTL and idle {idle}s > {idle_limit}s", idle_seconds=idle, idle_limit=idle_limit)
                    )
                else:
                    reason = "no TTL" if idle is not None else "no TTL (idle time unavailable)"
                    plan.actions.append(KeyAction(key, "set_ttl", key_type, namespace, reason, ttl=default_ttl, idle_seconds=idle))
        plan.scanned[namespace] = seen
    _plan_ticker_orphans(client, plan, scan_count)
    _plan_pending_orphans(client, plan, scan_count, final_status_of)
    return plan


def _plan_ticker_orphans(client, plan: CachePlan, scan_count: int) -> None:
    active_type = _text(client.type(ACTIVE_TICKERS))
    keys = list(scan_keys(client, TICKER_PREFIX + "*", scan_count))
    plan.scanned["ticker_last_seen"] = len(keys)
    if active_type == "none":
        if keys:
            plan.rules_disabled.append("ticker_last_seen: active_tickers does not exist; no ticker treated as orphaned")
        return
    if active_type != "set":
        plan.rules_disabled.append(f"ticker_last_seen: active_tickers is a {active_type}, not a set; rule skipped")
        plan.skipped.append({"key": ACTIVE_TICKERS, "reason": f"unexpected type {active_type}; skipped"})
        return
    active = {_text(m) for m in client.smembers(ACTIVE_TICKERS)}
    for batch in _batches(keys, scan_count):
        for key, _idle, key_type, _ttl in _describe_keys(client, batch):
            if key_type == "none":
                continue
            if key_type != "string":
                plan.skipped.append({"key": key, "reason": f"unexpected type {key_type} (expected string); skipped"})
                continue
            symbol = key[len(TICKER_PREFIX) :]
            if symbol not in active:
                plan.actions.append(KeyAction(key, "delete_orphan", key_type, "ticker_last_seen", f"{symbol} not in active_tickers"))


def _plan_pending_orphans(client, plan: CachePlan, scan_count: int, final_status_of) -> None:
    keys = list(scan_keys(client, PENDING_PREFIX + "*", scan_count))
    plan.scanned["orders_pending"] = len(keys)
    if not keys:
        return
    if final_status_of is None:
        plan.rules_disabled.append("orders:pending: no database lookup available; rule skipped")
        return
    hashes: list[str] = []
    for batch in _batches(keys, scan_count):
        for key, _idle, key_type, _ttl in _describe_keys(client, batch):
            if key_type == "none":
                continue
            if key_type != "hash":
                plan.skipped.append({"key": key, "reason": f"unexpected type {key_type} (expected hash); skipped"})
                continue
            hashes.append(key)
    ids = [k[len(PENDING_PREFIX) :] for k in hashes]
    statuses = final_status_of(ids) if ids else {}
    for key, order_id in zip(hashes, ids):
        status = (statuses.get(order_id) or "").lower()
        if status in FINAL_ORDER_STATUSES:
            plan.actions.append(KeyAction(key, "delete_orphan", "hash", "orders_pending", f"order {order_id} is {status} in the database"))


# Each script re-checks what the plan saw; returns 1 when it acted, 0 when the key changed meanwhile.
_SET_TTL = "if redis.call('TTL', KEYS[1]) == -1 then return redis.call('EXPIRE', KEYS[1], ARGV[1]) end return 0"
_DELETE_IDLE = """
if redis.call('TTL', KEYS[1]) ~= -1 then return 0 end
local ok, idle = pcall(redis.call, 'OBJECT', 'IDLETIME', KEYS[1])
if not ok or tonumber(idle) == nil or tonumber(idle) <= tonumber(ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[1])
"""
_DELETE_TICKER = """
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return 0 end
if redis.call('TYPE', KEYS[2]).ok ~= 'set' then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
return redis.call('DEL', KEYS[1])
"""
_DELETE_IF_HASH = "if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end return redis.call('DEL', KEYS[1])"


@dataclass
class CacheOutcome:
    applied: list[KeyAction] = field(default_factory=list)
    unchanged: list[dict] = field(default_factory=list)  # condition no longer true: left alone
    failed: list[dict] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for a in self.applied if a.action == action)


def apply_cache_plan(client, plan: CachePlan) -> CacheOutcome:
    outcome = CacheOutcome()
    scripts = {
        "set_ttl": client.register_script(_SET_TTL),
        "delete_idle": client.register_script(_DELETE_IDLE),
        "ticker": client.register_script(_DELETE_TICKER),
        "pending": client.register_script(_DELETE_IF_HASH),
    }
    for action in plan.actions:
        if is_protected(action.key):
            outcome.failed.append({"key": action.key, "reason": "protected key in plan; refused"})
            continue
        try:
            if action.action == "set_ttl":
                done = scripts["set_ttl"](keys=[action.key], args=[action.ttl])
            elif action.action == "delete_idle":
                done = scripts["delete_idle"](keys=[action.key], args=[action.idle_limit])
            elif action.category == "ticker_last_seen":
                done = scripts["ticker"](keys=[action.key, ACTIVE_TICKERS], args=[action.key[len(TICKER_PREFIX) :]])
            else:
                done = scripts["pending"](keys=[action.key])
        except Exception as exc:  # noqa: BLE001 - one bad key never stops the run
            outcome.failed.append({"key": action.key, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        if done:
            outcome.applied.append(action)
        else:
            outcome.unchanged.append({"key": action.key, "reason": "changed since planning; left alone"})
    return outcome


# --- memory ------------------------------------------------------------------------------------


def memory_info(client) -> dict:
    info = client.info("memory")
    return {
        "used_memory": int(info.get("used_memory", 0)),
        "used_memory_rss": int(info.get("used_memory_rss", 0)),
        "mem_fragmentation_ratio": float(info.get("mem_fragmentation_ratio", 0) or 0),
        "mem_allocator": str(info.get("mem_allocator", "")),
        "maxmemory": int(info.get("maxmemory", 0)),
        "maxmemory_policy": str(info.get("maxmemory_policy", "")),
    }


def should_purge(memory: dict, ratio_threshold: float, min_excess_bytes: float) -> tuple[bool, str]:
    """MEMORY PURGE helps only jemalloc, only when fragmentation is high and the excess is real."""
    ratio = memory.get("mem_fragmentation_ratio", 0)
    excess = memory.get("used_memory_rss", 0) - memory.get("used_memory", 0)
    if not str(memory.get("mem_allocator", "")).startswith("jemalloc"):
        return False, f"allocator {memory.get('mem_allocator') or 'unknown'} does not support MEMORY PURGE"
    if ratio <= ratio_threshold:
        return False, f"fragmentation {ratio:.2f} <= {ratio_threshold}"
    if excess < min_excess_bytes:
        return False, f"fragmentation {ratio:.2f} but only {excess} bytes over used memory (< {int(min_excess_bytes)})"
    return True, f"fragmentation {ratio:.2f} > {ratio_threshold} with {excess} bytes over used memory"
