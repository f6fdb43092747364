"""Which pg_dump is used, and how it connects (TCP or Unix socket), without leaking the password."""

from trading_maintenance.core.backups import postgres_dump


def test_libpq_args_tcp_and_unix_socket():
    args, env = postgres_dump.libpq_args("postgresql://trader:s3cret@db.internal:6543/trading")
    assert args == ["-h", "db.internal", "-p", "6543", "-U", "trader"] and env["PGPASSWORD"] == "s3cret"
    assert "s3cret" not in " ".join(args)
    args, _ = postgres_dump.libpq_args("postgresql://postgres:@/postgres?host=/tmp/pgsock")
    assert args[:2] == ["-h", "/tmp/pgsock"]


def test_newest_pg_dump_wins():
    folder = postgres_dump._best_pg_bin_dir()
    if folder is None:
        assert postgres_dump.pg_tool("pg_dump") is None
        return
    chosen = postgres_dump.major_version(postgres_dump.pg_dump_version(postgres_dump.pg_tool("pg_dump")))
    for other in postgres_dump._pg_bin_dirs():
        assert chosen >= postgres_dump.major_version(postgres_dump.pg_dump_version(f"{other}/pg_dump"))
    assert postgres_dump.pg_tool("pg_restore").startswith(folder)  # dump and restore from one installation
