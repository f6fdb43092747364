"""Daily API rate-limit counters: archive yesterday's count, reset, analyse utilisation.

`rate_limit:{api}:daily` (calls used today) and `rate_limit:{api}:limit` (daily quota) are the
platform's keys. At the start of a day the count is archived into `rate_limit:{api}:history` (a
hash: date -> JSON {used, limit, archived_at}) and the counter reset, in one Lua script, so an
INCR arriving meanwhile lands either before (archived) or after (counts for the new day), never
lost. `rate_limit:{api}:last_reset` records the day archived, which makes a second run on the same
day a no-op. History older than the kept window (at least 90 days) is pruned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

DAILY_SUFFIX = ":daily"
PREFIX = "rate_limit:"

# KEYS: daily, limit, history, last_reset. ARGV: day, archived_at, dry_run (1/0).
# Returns {status, used, limit}; status: reset / already / not_integer / wrong_type / dry_run.
_ARCHIVE_AND_RESET = """
local day = ARGV[1]
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return {'wrong_type', '', ''} end
if redis.call('TYPE', KEYS[3]).ok ~= 'hash' and redis.call('EXISTS', KEYS[3]) == 1 then return {'history_wrong_type', '', ''} end
local last = redis.call('GET', KEYS[4])
if last == day then return {'already', redis.call('GET', KEYS[1]) or '', ''} end
local used = redis.call('GET', KEYS[1])
if tonumber(used) == nil or math.floor(tonumber(used)) ~= tonumber(used) then return {'not_integer', '', ''} end
local limit = ''
if redis.call('TYPE', KEYS[2]).ok == 'string' then limit = redis.call('GET', KEYS[2]) or '' end
if ARGV[3] == '1' then return {'dry_run', used, limit} end
local record = cjson.encode({used = tonumber(used), limit = tonumber(limit), archived_at = ARGV[2]})
redis.call('HSET', KEYS[3], day, record)
redis.call('SET', KEYS[1], '0', 'KEEPTTL')
redis.call('SET', KEYS[4], day)
return {'reset', used, limit}
"""


def keys_for(api: str) -> dict[str, str]:
    return {
        "daily": f"{PREFIX}{api}{DAILY_SUFFIX}",
        "limit": f"{PREFIX}{api}:limit",
        "history": f"{PREFIX}{api}:history",
        "last_reset": f"{PREFIX}{api}:last_reset",
    }


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ("" if value is None else str(value))


def discover_apis(client, scan_count: int = 500) -> list[str]:
    apis = set()
    for key in client.scan_iter(match=f"{PREFIX}*{DAILY_SUFFIX}", count=scan_count):
        name = _text(key)
        api = name[len(PREFIX) : -len(DAILY_SUFFIX)]
        if api and ":" not in api:
            apis.add(api)
    return sorted(apis)


@dataclass
class ResetResult:
    api: str
    status: str  # reset / already / dry_run / not_integer / wrong_type / history_wrong_type / error
    day: str
    used: int | None = None
    limit: int | None = None
    pruned: int = 0
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def as_dict(self) -> dict:
        return asdict(self)


def _int_or_none(value: str) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def archive_and_reset(client, api: str, day: date, archived_at: str, dry_run: bool = False) -> ResetResult:
    keys = keys_for(api)
    script = client.register_script(_ARCHIVE_AND_RESET)
    try:
        status, used, limit = script(
            keys=[keys["daily"], keys["limit"], keys["history"], keys["last_reset"]],
            args=[day.isoformat(), archived_at, "1" if dry_run else "0"],
        )
    except Exception as exc:  # noqa: BLE001 - one API's trouble never stops the others
        return ResetResult(api, "error", day.isoformat(), detail=f"{type(exc).__name__}: {exc}")
    status = _text(status)
    detail = {
        "wrong_type": f"{keys['daily']} is not a string counter; skipped",
        "not_integer": f"{keys['daily']} does not hold an integer; skipped",
        "history_wrong_type": f"{keys['history']} is not a hash; skipped",
        "already": f"{day.isoformat()} already archived; counter not reset again",
    }.get(status, "")
    return ResetResult(api, status, day.isoformat(), _int_or_none(_text(used)), _int_or_none(_text(limit)), detail=detail)


def prune_history(client, api: str, today: date, keep_days: int, dry_run: bool = False) -> int:
    key = keys_for(api)["history"]
    if _text(client.type(key)) != "hash":
        return 0
    cutoff = today - timedelta(days=keep_days)
    old = []
    for field_name in client.hkeys(key):
        name = _text(field_name)
        try:
            if date.fromisoformat(name) < cutoff:
                old.append(name)
        except ValueError:
            continue
    if old and not dry_run:
        client.hdel(key, *old)
    return len(old)


def read_history(client, api: str) -> dict[str, dict]:
    key = keys_for(api)["history"]
    if _text(client.type(key)) != "hash":
        return {}
    out = {}
    for field_name, raw in client.hgetall(key).items():
        try:
            record = json.loads(_text(raw))
            if isinstance(record, dict):
                out[_text(field_name)] = record
        except ValueError:
            continue
    return out


@dataclass
class Utilisation:
    api: str
    days: int
    days_with_quota: int
    peak_share: float | None
    mean_share: float | None
    days_above_warn: int
    days_over_quota: int
    peak_used: int
    recommendation: str = ""
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def analyse(api: str, history: dict[str, dict], today: date, window_days: int = 90, warn_share: float = 0.8) -> Utilisation:
    """Peak and mean share of quota over the window, days above warn_share, and what to change."""
    start = today - timedelta(days=window_days)
    shares, used_values = [], []
    days = 0
    for day_text, record in history.items():
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            continue
        if day < start:
            continue
        days += 1
        used = record.get("used")
        limit = record.get("limit")
        if isinstance(used, (int, float)):
            used_values.append(int(used))
            if isinstance(limit, (int, float)) and limit > 0:
                shares.append(used / limit)
    above = sum(1 for s in shares if s > warn_share)
    over = sum(1 for s in shares if s > 1)
    peak = max(shares) if shares else None
    mean = sum(shares) / len(shares) if shares else None
    result = Utilisation(
        api,
        days,
        len(shares),
        round(peak, 4) if peak is not None else None,
        round(mean, 4) if mean is not None else None,
        above,
        over,
        max(used_values) if used_values else 0,
    )
    if days == 0:
        result.recommendation = "no history yet; nothing to recommend"
    elif not shares:
        result.recommendation = f"no quota recorded: set rate_limit:{api}:limit so utilisation can be judged"
    elif over:
        result.recommendation = f"quota exceeded on {over} of {len(shares)} days: raise the plan's quota or throttle/cache calls"
    elif above >= max(3, len(shares) // 10):
        result.recommendation = f"above {int(warn_share * 100)}% of quota on {above} days: add caching or spread calls before it runs out"
    elif mean is not None and peak is not None and peak < 0.25:
        result.recommendation = f"peak use {peak:.0%} of quota: the quota is ample (a cheaper plan may do)"
    else:
        result.recommendation = "utilisation healthy; no change needed"
    return result
