"""Shared fixtures: real Redis, real PostgreSQL, temporary data roots.

The suite touches only servers it started itself (see private_servers.py), unless TEST_REDIS_URL /
TEST_PG_URL name others (`.ci/run` points them at the CI machine's own servers).

Redis: each test gets its own logical database (1-15), claimed with a lock key in database 0 so
parallel test processes never share one, and flushed before use.
PostgreSQL: each test gets a fresh database, dropped after.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import pytest
import redis
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from trading_maintenance_tests.private_servers import start_private_postgres, start_private_redis

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# The backup repository keeps derived keys in a private cache; the suite's go to a folder of its own, removed at exit,
# never the user's ~/.cache (the backups tests point it at each test's folder).
_KEY_CACHE = tempfile.mkdtemp(prefix="tm-tests-key-cache-")
os.environ["BACKUP_KEY_CACHE_DIR"] = _KEY_CACHE
atexit.register(shutil.rmtree, _KEY_CACHE, True)


@pytest.fixture(autouse=True)
def _no_leaked_dagster_instance(monkeypatch):
    """Every Dagster instance a test enters, the test exits.

    Entering an instance makes its defs-state storage Dagster's current one; exiting restores the
    one current before. An instance left entered (a schedule context built outside `with` opens
    its own instance from the ref) is exited only when the garbage collector finalises it, at any
    point of any later test, and then restores the storage of an instance closed long ago: that
    test's `dg.materialize` fails with "Attempted to resolve undefined DagsterInstance weakref".
    Such an instance is exited here, in order, and fails the test that left it."""
    from dagster import DagsterInstance
    from dagster._core.storage.defs_state import base as defs_state_base

    entered: dict[int, tuple[DagsterInstance, str]] = {}
    enter, leave = DagsterInstance.__enter__, DagsterInstance.__exit__

    def tracked_enter(instance):
        outside_libraries = [frame for frame in traceback.extract_stack()[:-1] if "site-packages" not in frame.filename]
        entered[id(instance)] = (instance, "".join(traceback.format_list(outside_libraries[-3:])))
        return enter(instance)

    def tracked_exit(instance, *exc_info):
        entered.pop(id(instance), None)
        return leave(instance, *exc_info)

    monkeypatch.setattr(DagsterInstance, "__enter__", tracked_enter)
    monkeypatch.setattr(DagsterInstance, "__exit__", tracked_exit)
    defs_state_base._current_storage.set(None)
    yield
    left_open = list(entered.values())
    for instance, _ in reversed(left_open):
        instance.__exit__(None, None, None)
    defs_state_base._current_storage.set(None)
    assert not left_open, ("the test left a Dagster instance entered (use `with` for it and for the schedule or "
                           "sensor context that opened it); entered at:\n" + left_open[0][1])


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        return url
    server = start_private_redis()
    _private_servers.append(server)
    return server.url


_private_servers: list = []


def pytest_sessionfinish(session, exitstatus):
    while _private_servers:
        _private_servers.pop().stop()


def _with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):
        base = url.split("?")[0]
        return f"{base}?db={db}"
    base = url.rstrip("/")
    parts = base.split("/")
    if len(parts) > 3 and parts[-1].isdigit():
        base = "/".join(parts[:-1])
    return f"{base}/{db}"


@contextlib.contextmanager
def claim_redis_database(server_url: str, order=range(1, 16)):
    """A flushed logical database (1-15) of the server, held exclusively through a lock key in db 0,
    so parallel test processes and several fixtures of one test never share one."""
    control = redis.Redis.from_url(_with_db(server_url, 0))
    token = uuid.uuid4().hex
    deadline = time.time() + 120
    try:
        while True:
            for db in order:
                if control.set(f"tm-test-lock:{db}", token, nx=True, ex=600):
                    url = _with_db(server_url, db)
                    client = redis.Redis.from_url(url)
                    client.flushdb()
                    try:
                        yield url
                    finally:
                        client.flushdb()
                        client.close()
                        if control.get(f"tm-test-lock:{db}") == token.encode():
                            control.delete(f"tm-test-lock:{db}")
                    return
            if time.time() > deadline:
                raise RuntimeError("no free Redis test database (1-15) within 120 s")
            time.sleep(0.2)
    finally:
        control.close()


@pytest.fixture
def redis_url(redis_server_url):
    """A flushed logical database of the real Redis server, held exclusively by this test."""
    with claim_redis_database(redis_server_url) as url:
        yield url


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get("TEST_PG_URL")
    if url:
        return url
    server = start_private_postgres()
    _private_servers.append(server)
    return server.url


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh PostgreSQL database on the real server, dropped after the test."""
    name = f"tm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from trading_maintenance.resources import database as database_module

        for key, engine in list(database_module._engines.items()):
            if key[0] == url:
                engine.dispose()
                database_module._engines.pop(key, None)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def write_config(tmp_path: Path, data_dir: Path, **sections) -> Path:
    """A config/maintenance.yml for a test: the defaults plus the given sections (deep-merged)."""
    config = {
        "data_dir": str(data_dir),
        "services": [],
        "maintenance": {"alerts": {"cpu_sample_seconds": 0.1}},
    }

    def merge(into: dict, extra: dict) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, sections)
    path = tmp_path / "maintenance.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def config_path(tmp_path, data_dir) -> Path:
    return write_config(tmp_path, data_dir)


@pytest.fixture
def make_resources(redis_url, data_dir, config_path):
    """Build the project's real resources for a test: real Redis, a given database URL."""
    from trading_maintenance.resources import (
        AlertsResource,
        MaintenanceSettingsResource,
        PlatformServicesResource,
        RedisResource,
        SystemProbeResource,
        TradingDatabaseResource,
    )

    def build(database_url: str = "", config: Path | None = None, **overrides):
        resources = {
            "settings": MaintenanceSettingsResource(config_path=str(config or config_path), data_dir=str(data_dir)),
            "redis": RedisResource(url=redis_url, data_dir=str(data_dir)),
            "trading_db": TradingDatabaseResource(url=database_url, data_dir=str(data_dir)),
            "system_probe": SystemProbeResource(data_dir=str(data_dir), cpu_sample_seconds=0.1),
            "platform_services": PlatformServicesResource(endpoints={}),
            "alerts": AlertsResource(data_dir=str(data_dir), cooldown_minutes=30),
        }
        resources.update(overrides)
        return resources

    return build


def run_asset_job(job, assets, resources, **execute_kwargs):
    """Execute one of the project's asset jobs in process against the test's resources."""
    import dagster as dg

    resolved = dg.Definitions(assets=assets, jobs=[job], resources=resources).resolve_job_def(job.name)
    return resolved.execute_in_process(**execute_kwargs)
