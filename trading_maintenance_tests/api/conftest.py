"""A real Dagster instance in a temporary DAGSTER_HOME, the project's settings pointed at a temporary
data root and the test's Redis, and the API over them."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from trading_maintenance_tests.conftest import write_config


@pytest.fixture
def api_env(tmp_path, data_dir, redis_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, data_dir)))
    monkeypatch.setenv("TRADING_DATA_DIR", str(data_dir))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MAINTENANCE_ENV_FILE", "")
    monkeypatch.delenv("MAINTENANCE_API_TOKEN", raising=False)
    return tmp_path


@pytest.fixture
def instance(api_env):
    from trading_maintenance.instance import open_instance

    opened, _ = open_instance()
    yield opened
    opened.dispose()


def make_app(instance, token=None):
    from trading_maintenance.api import create_app

    return create_app(instance=instance, token=token)


@pytest.fixture
def client(instance):
    from fastapi.testclient import TestClient

    app = make_app(instance)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(instance):
    """The API under a real uvicorn server on a free loopback port; its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(instance), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
