"""Redis keys to and from a portable JSON-lines file: every key with its type, value and TTL.

Reading a database walks it with SCAN in batches; each batch's TYPE and PTTL, then its values, are
fetched in pipelines. Values are base64 (binary-safe). The five core types are stored as values
(portable across Redis versions); any other type (streams, modules) as its DUMP payload. One line
per key:

    {"k": <b64 key>, "t": "hash", "ttl": <ms or -1>, "v": <value>}
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CORE_TYPES = ("string", "list", "set", "zset", "hash")


def _b(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb(text: str) -> bytes:
    return base64.b64decode(text)


def _decode_type(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode_value(kind: str, raw) -> object:
    if kind == "string":
        return _b(raw)
    if kind == "list":
        return [_b(x) for x in raw]
    if kind == "set":
        return sorted(_b(x) for x in raw)
    if kind == "zset":
        return [[_b(member), repr(float(score))] for member, score in raw]
    if kind == "hash":
        return sorted([_b(f), _b(v)] for f, v in raw.items())
    return {"dump": _b(raw)}


def iter_redis_records(client, batch: int = 500, match: str | None = None) -> Iterator[dict]:
    """Every key of the client's database as a record; keys vanishing mid-scan are skipped."""
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=batch, match=match)
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
                pipe.pttl(key)
            meta = pipe.execute()
            typed = [(key, _decode_type(meta[2 * i]), int(meta[2 * i + 1])) for i, key in enumerate(keys)]
            typed = [t for t in typed if t[1] != "none"]
            pipe = client.pipeline(transaction=False)
            for key, kind, _ttl in typed:
                if kind == "string":
                    pipe.get(key)
                elif kind == "list":
                    pipe.lrange(key, 0, -1)
                elif kind == "set":
                    pipe.smembers(key)
                elif kind == "zset":
                    pipe.zrange(key, 0, -1, withscores=True)
                elif kind == "hash":
                    pipe.hgetall(key)
                else:
                    pipe.dump(key)
            values = pipe.execute(raise_on_error=False)
            for (key, kind, ttl), raw in zip(typed, values):
                if raw is None or isinstance(raw, Exception):
                    continue  # expired or changed type between the two pipelines
                if kind in ("list", "set", "zset", "hash") and not raw:
                    continue
                yield {"k": _b(key), "t": kind, "ttl": ttl if ttl > 0 else -1, "v": _encode_value(kind, raw)}
        if cursor == 0:
            break


def record_digest(record: dict) -> str:
    body = json.dumps({"k": record["k"], "t": record["t"], "v": record["v"]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class RedisSnapshotStats:
    keys: int = 0
    by_type: dict = field(default_factory=dict)
    with_ttl: int = 0
    digest: str = ""
    bytes: int = 0
    rdb_bytes: int = 0  # size of the point-in-time snapshot the keys were read from (0: read live)

    def as_dict(self) -> dict:
        return {"keys": self.keys, "by_type": self.by_type, "with_ttl": self.with_ttl, "digest": self.digest, "bytes": self.bytes,
                "rdb_bytes": self.rdb_bytes}


def _combine(digests: list[tuple[str, str]]) -> str:
    overall = hashlib.sha256()
    for key, digest in sorted(digests):
        overall.update(key.encode() + b"\0" + digest.encode() + b"\n")
    return overall.hexdigest()


def write_records(records: Iterator[dict], out_path: Path) -> RedisSnapshotStats:
    stats = RedisSnapshotStats()
    kinds: Counter = Counter()
    digests = []
    with open(out_path, "w", encoding="ascii") as out:
        for record in records:
            line = json.dumps(record, separators=(",", ":")) + "\n"
            out.write(line)
            stats.bytes += len(line)
            kinds[record["t"]] += 1
            stats.with_ttl += record["ttl"] > 0
            digests.append((record["k"], record_digest(record)))
    stats.keys = len(digests)
    stats.by_type = dict(sorted(kinds.items()))
    stats.digest = _combine(digests)
    return stats


def snapshot_stats(client, batch: int = 500) -> RedisSnapshotStats:
    """The same counts and digest as export_redis, computed from a live database."""
    stats = RedisSnapshotStats()
    kinds: Counter = Counter()
    digests = []
    for record in iter_redis_records(client, batch):
        kinds[record["t"]] += 1
        stats.with_ttl += record["ttl"] > 0
        digests.append((record["k"], record_digest(record)))
    stats.keys = len(digests)
    stats.by_type = dict(sorted(kinds.items()))
    stats.digest = _combine(digests)
    return stats


def read_records(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="ascii") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise ValueError(f"redis export line {line_no} is not valid JSON") from None


@dataclass
class RedisRestorePlan:
    create: int = 0
    replace: int = 0
    existing_sample: list[str] = field(default_factory=list)
    by_type: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"create": self.create, "replace": self.replace, "existing_sample": self.existing_sample, "by_type": self.by_type}


def plan_redis_restore(client, path: str | Path, batch: int = 500) -> RedisRestorePlan:
    plan = RedisRestorePlan()
    kinds: Counter = Counter()
    chunk: list[dict] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for record in chunk:
            pipe.exists(_unb(record["k"]))
        for record, exists in zip(chunk, pipe.execute()):
            if exists:
                plan.replace += 1
                if len(plan.existing_sample) < 20:
                    plan.existing_sample.append(_unb(record["k"]).decode("utf-8", "replace"))
            else:
                plan.create += 1
        chunk.clear()

    for record in read_records(path):
        kinds[record["t"]] += 1
        chunk.append(record)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    plan.by_type = dict(sorted(kinds.items()))
    return plan


def _write_record(pipe, record: dict) -> None:
    key = _unb(record["k"])
    kind, value, ttl = record["t"], record["v"], int(record.get("ttl", -1))
    if kind not in CORE_TYPES:
        pipe.restore(key, ttl if ttl > 0 else 0, _unb(value["dump"]), replace=True)
        return
    pipe.delete(key)
    if kind == "string":
        pipe.set(key, _unb(value))
    elif kind == "list":
        pipe.rpush(key, *[_unb(x) for x in value])
    elif kind == "set":
        pipe.sadd(key, *[_unb(x) for x in value])
    elif kind == "zset":
        pipe.zadd(key, {_unb(m): float(s) for m, s in value})
    elif kind == "hash":
        pipe.hset(key, mapping={_unb(f): _unb(v) for f, v in value})
    if ttl > 0:
        pipe.pexpire(key, ttl)


def restore_redis(client, path: str | Path, batch: int = 200) -> int:
    """Write every record (replacing keys of the same name); returns the number of keys written.
    Each batch is one MULTI/EXEC: a reader never sees a key half written or without its TTL."""
    written = 0
    pipe = client.pipeline(transaction=True)
    pending = 0
    for record in read_records(path):
        _write_record(pipe, record)
        pending += 1
        if pending >= batch:
            pipe.execute()
            written += pending
            pending = 0
    if pending:
        pipe.execute()
        written += pending
    return written


def compare_ttls(client, path: str | Path, slack_ms: int = 0) -> list[str]:
    """Keys whose TTL did not come back: a TTL'd key must have one no longer than it had; others none."""
    problems = []
    for record in read_records(path):
        key = _unb(record["k"])
        ttl = client.pttl(key)
        if record["ttl"] > 0 and not (0 < ttl <= record["ttl"] + slack_ms):
            problems.append(f"{key.decode('utf-8', 'replace')}: TTL {ttl} ms after restore, {record['ttl']} ms in backup")
        elif record["ttl"] <= 0 and ttl != -1:
            problems.append(f"{key.decode('utf-8', 'replace')}: has TTL {ttl} ms after restore, none in backup")
        if len(problems) >= 20:
            break
    return problems
