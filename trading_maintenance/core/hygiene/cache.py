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
- `orders:pending:{client_order_id}` (a hash) whose order the database has in a final status
  (filled, cancelled, rejected, expired) is reported as a finding (key and why), never deleted:
  it is the executor's state, and only the executor (or reconciliation's explicit fixes) change it.
- Protected keys (platform state: `positions:*`, `orders:*`, `portfolio:*`, `active_tickers`;
  `trading:emergency_stop`, `config:*`, `circuit:*`; maintenance's own `maintenance:*` and
  `rate_limit:*`) are never touched by a namespace, even if one is misconfigured to cover them:
  settings refuse such a namespace (`namespace_overlaps`) and planning and applying refuse the keys,
  with no exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

CACHE_TYPES = {"string", "hash", "list", "set", "zset"}
PROTECTED_PREFIXES = ("positions:", "orders:", "portfolio:", "config:", "circuit:", "maintenance:", "rate_limit:")
PROTECTED_KEYS = ("trading:emergency_stop", "active_tickers")
FINAL_ORDER_STATUSES = {"filled", "cancelled", "canceled", "rejected", "expired"}
TICKER_PREFIX = "ticker_last_seen:"
PENDING_PREFIX = "orders:pending:"
ACTIVE_TICKERS = "active_tickers"


def is_protected(key: str) -> bool:
    return key in PROTECTED_KEYS or key.startswith(PROTECTED_PREFIXES)


def protected_patterns() -> list[str]:
    """Every protected key as a Redis glob pattern (prefixes with a trailing `*`)."""
    return [_glob_escape(k) for k in PROTECTED_KEYS] + [_glob_escape(p) + "*" for p in PROTECTED_PREFIXES]


# --- glob overlap --------------------------------------------------------------------------------
# A namespace overlaps the protected keys when one key could match both its pattern and a protected
# pattern. Decided exactly on Redis glob syntax (`*`, `?`, `[...]` with `^` and ranges, `\` escapes)
# by walking both patterns together; a character class is tested on a finite alphabet that holds
# every byte value and every character either pattern names, which is enough to witness any
# non-empty intersection of two classes.


def _glob_tokens(pattern: str) -> list[tuple]:
    """("star",) or ("class", negated, frozenset(chars), ((low, high), ...)) per pattern position."""
    tokens: list[tuple] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if not tokens or tokens[-1] != ("star",):
                tokens.append(("star",))
            i += 1
        elif ch == "?":
            tokens.append(("class", True, frozenset(), ()))
            i += 1
        elif ch == "[":
            i += 1
            negated = i < len(pattern) and pattern[i] == "^"
            i += negated
            chars: set[str] = set()
            ranges: list[tuple[str, str]] = []
            while i < len(pattern) and pattern[i] != "]":
                if pattern[i] == "\\" and i + 1 < len(pattern):
                    i += 1
                    chars.add(pattern[i])
                    i += 1
                elif i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    ranges.append((low, high))
                    i += 3
                else:
                    chars.add(pattern[i])
                    i += 1
            i += 1  # the closing bracket (Redis accepts an unclosed class to the end)
            tokens.append(("class", negated, frozenset(chars), tuple(ranges)))
        else:
            if ch == "\\" and i + 1 < len(pattern):
                i += 1
                ch = pattern[i]
            tokens.append(("class", False, frozenset(ch), ()))
            i += 1
    return tokens


def _class_has(token: tuple, ch: str) -> bool:
    _, negated, chars, ranges = token
    inside = ch in chars or any(low <= ch <= high for low, high in ranges)
    return inside != negated


def glob_overlap(first: str, second: str) -> str | None:
    """A key matching both Redis glob patterns, or None when no key can match both."""
    a, b = _glob_tokens(first), _glob_tokens(second)
    alphabet = {chr(c) for c in range(256)}
    for token in a + b:
        if token[0] == "class":
            alphabet |= set(token[2]) | {c for rng in token[3] for c in rng}
    letters = sorted(alphabet)
    start = (0, 0)
    came_from: dict[tuple[int, int], tuple[tuple[int, int], str]] = {start: (start, "")}
    queue = [start]
    while queue:
        i, j = state = queue.pop(0)
        if i == len(a) and j == len(b):
            witness = []
            while state != start:
                state, ch = came_from[state]
                witness.append(ch)
            return "".join(reversed(witness))
        steps: list[tuple[tuple[int, int], str]] = []
        star_a = i < len(a) and a[i][0] == "star"
        star_b = j < len(b) and b[j][0] == "star"
        if star_a:
            steps.append(((i + 1, j), ""))
        if star_b:
            steps.append(((i, j + 1), ""))
        if i < len(a) and j < len(b):
            # one character consumed by both sides (a star consumes it and stays)
            ni, nj = (i if star_a else i + 1), (j if star_b else j + 1)
            ch = next((c for c in letters if (star_a or _class_has(a[i], c)) and (star_b or _class_has(b[j], c))), None)
            if ch is not None and (ni, nj) != (i, j):
                steps.append(((ni, nj), ch))
        for nxt, ch in steps:
            if nxt not in came_from:
                came_from[nxt] = (state, ch)
                queue.append(nxt)
    return None


def namespace_overlaps(namespace: str) -> list[tuple[str, str]]:
    """(protected pattern, example key) for every protected key the namespace could reach.

    A namespace is scanned as a literal prefix here, but other readers may use it as a glob
    (`namespace*`): both readings must stay clear of the protected keys."""
    readings = {namespace + "*", _glob_escape(namespace) + "*"}
    found = []
    for protected in protected_patterns():
        for reading in sorted(readings):
            example = glob_overlap(reading, protected)
            if example is not None:
                found.append((protected, example))
                break
    return found


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
    refused_namespaces: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)  # {key, reason}: reported for a person, never acted on

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
        overlaps = namespace_overlaps(namespace)
        if overlaps:
            protected, example = overlaps[0]
            plan.refused_namespaces.append(f"namespace {namespace!r} overlaps protected keys {protected!r} (e.g. {example!r}); not scanned")
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
    _report_stale_pending_orders(client, plan, scan_count, final_status_of)
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


def _report_stale_pending_orders(client, plan: CachePlan, scan_count: int, final_status_of) -> None:
    """Findings for `orders:pending:*` hashes whose order is final in the database; nothing is planned."""
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
            plan.findings.append(
                {
                    "key": key,
                    "reason": f"order {order_id} is {status} in the database but still listed as pending; "
                    "platform state, reported only (the executor or reconciliation must clear it)",
                }
            )


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
            elif action.action == "delete_orphan" and action.category == "ticker_last_seen":
                done = scripts["ticker"](keys=[action.key, ACTIVE_TICKERS], args=[action.key[len(TICKER_PREFIX) :]])
            else:
                outcome.failed.append({"key": action.key, "reason": f"unknown action {action.action} ({action.category}); refused"})
                continue
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
