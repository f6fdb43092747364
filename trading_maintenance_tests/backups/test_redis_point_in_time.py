"""The Redis backup is one point in time: taken under a transactional write load, it restores to a
state that existed at one instant, exactly."""

from __future__ import annotations

import random
import socket
import threading

import pytest
import redis

from trading_maintenance.core.backups.redis_records import restore_redis, snapshot_stats
from trading_maintenance.core.backups.redis_snapshot import RedisSnapshotError, export_redis, fetch_rdb, scratch_redis

GENERATION_KEYS = 20_000
ACCOUNTS = 50
OPENING_BALANCE = 1_000
MAX_TRANSACTIONS = 3_000  # the writer's own bound, should the backup never stop it


class TransactionalLoad(threading.Thread):
    """MULTI/EXEC transactions, each moving money between two accounts (the sum of balances stays
    constant) and writing one new generation number to every generation key."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.generation_keys = [f"gen:{i}" for i in range(GENERATION_KEYS)]
        self.accounts = [f"account:{i}" for i in range(ACCOUNTS)]
        self.running = threading.Event()
        self.stop = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None

    def seed(self) -> None:
        self.client.mset(dict.fromkeys(self.generation_keys, 0))
        self.client.mset(dict.fromkeys(self.accounts, OPENING_BALANCE))

    def run(self) -> None:
        rng = random.Random(7)
        try:
            for generation in range(1, MAX_TRANSACTIONS + 1):
                if self.stop.is_set():
                    break
                payer, payee = rng.sample(self.accounts, 2)
                amount = rng.randint(1, 50)
                pipe = self.client.pipeline(transaction=True)
                pipe.decrby(payer, amount)
                pipe.incrby(payee, amount)
                pipe.mset(dict.fromkeys(self.generation_keys, generation))
                pipe.execute()
                self.committed = generation
                self.running.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.running.set()


def test_backup_under_transactional_load_restores_one_instant(redis_url, spare_redis_url, tmp_path):
    source = redis.Redis.from_url(redis_url)
    target = redis.Redis.from_url(spare_redis_url)
    load = TransactionalLoad(source)
    load.seed()
    load.start()
    try:
        assert load.running.wait(30) and load.error is None
        stats = export_redis(source, tmp_path / "keys.jsonl")
    finally:
        load.stop.set()
        load.join(60)
    assert load.error is None and load.committed >= 1
    assert stats.keys == GENERATION_KEYS + ACCOUNTS and stats.rdb_bytes > 0

    assert restore_redis(target, tmp_path / "keys.jsonl") == GENERATION_KEYS + ACCOUNTS
    generations = set(target.mget(load.generation_keys))
    assert len(generations) == 1, f"{len(generations)} generations restored"
    assert sum(int(v) for v in target.mget(load.accounts)) == ACCOUNTS * OPENING_BALANCE
    assert snapshot_stats(target).digest == stats.digest
    assert list(tmp_path.iterdir()) == [tmp_path / "keys.jsonl"]  # the snapshot and its scratch folder are gone


def test_export_keeps_ttls_and_only_the_clients_database(redis_url, spare_redis_url, tmp_path):
    source = redis.Redis.from_url(redis_url)
    other = redis.Redis.from_url(spare_redis_url)
    source.set("session:a", "x", px=600_000)
    source.set("config:b", "y")
    other.set("not:mine", "z")
    stats = export_redis(source, tmp_path / "keys.jsonl")
    assert (stats.keys, stats.with_ttl) == (2, 1)
    other.flushdb()
    restore_redis(other, tmp_path / "keys.jsonl")
    assert sorted(other.keys()) == [b"config:b", b"session:a"]
    assert 0 < other.pttl("session:a") <= 600_000 and other.pttl("config:b") == -1


class FakePrimary(threading.Thread):
    """A local server speaking the replication side of the Redis protocol: +OK to the handshake,
    then `reply` to SYNC."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(daemon=True)
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[list[bytes]] = []

    def run(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as stream:
            while True:
                header = stream.readline()
                if not header.startswith(b"*"):
                    return
                args = []
                for _ in range(int(header[1:])):
                    length = int(stream.readline()[1:])
                    args.append(stream.read(length + 2)[:-2])
                self.commands.append(args)
                if args[0].upper() == b"SYNC":
                    conn.sendall(self.reply)
                    return
                conn.sendall(b"+OK\r\n")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, protocol=2)


@pytest.fixture
def real_rdb(redis_client, tmp_path) -> bytes:
    redis_client.set("k", "v")
    fetch_rdb(redis_client, tmp_path / "real.rdb")
    return (tmp_path / "real.rdb").read_bytes()


def test_diskless_transfer_with_keepalives_is_read_to_its_mark(real_rdb, tmp_path):
    mark = b"0123456789abcdef0123456789abcdef01234567"
    primary = FakePrimary(b"+FULLRESYNC abc 0\r\n\n\n\n$EOF:" + mark + b"\r\n" + real_rdb + mark + b"*1\r\n$4\r\nPING\r\n")
    primary.start()
    size = fetch_rdb(primary.client(), tmp_path / "got.rdb", diskless=True)
    assert size == len(real_rdb) and (tmp_path / "got.rdb").read_bytes() == real_rdb
    assert [b"REPLCONF", b"capa", b"eof"] in primary.commands
    with scratch_redis(tmp_path / "got.rdb") as scratch:
        assert scratch.dbsize() >= 0


@pytest.mark.parametrize(
    "reply, message",
    [
        (b"-NOPERM this user has no permissions to run the 'sync' command\r\n", "refused to send a snapshot: NOPERM"),
        (b"\n\n$999999999\r\nREDIS", "larger than the limit"),
        (b"$12\r\nnot an rdb!!", "not an RDB snapshot"),
        (b"\n$100\r\nREDIS0010", "closed the connection before the snapshot was complete"),
        (b"$EOF:short\r\nREDIS", "malformed end-of-snapshot mark"),
    ],
)
def test_a_bad_or_oversized_snapshot_is_a_clear_error_and_leaves_no_file(reply, message, tmp_path):
    primary = FakePrimary(reply)
    primary.start()
    with pytest.raises(RedisSnapshotError, match=message):
        fetch_rdb(primary.client(), tmp_path / "got.rdb", max_bytes=1 << 20)
    assert not (tmp_path / "got.rdb").exists()


def test_a_snapshot_the_scratch_server_cannot_load_is_a_clear_error(tmp_path):
    (tmp_path / "bad.rdb").write_bytes(b"REDIS0009" + b"\xfe\x00garbage" * 10)
    with pytest.raises(RedisSnapshotError, match="could not load the snapshot"):
        with scratch_redis(tmp_path / "bad.rdb"):
            pass
