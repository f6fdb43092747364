"""The suite touches only servers it started itself unless TEST_REDIS_URL / TEST_PG_URL say otherwise."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

INNER_TEST = '''
import json, os, redis
from sqlalchemy import create_engine, text

def test_report(redis_server_url, pg_server_url, redis_url, pg_url):
    redis.Redis.from_url(redis_url).set("probe", "1")
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        conn.execute(text("select 1"))
    engine.dispose()
    with open(os.environ["REPORT_PATH"], "w") as fh:
        json.dump({"redis": redis_server_url, "pg": pg_server_url}, fh)
'''


def _port_of(url: str) -> int | None:
    from sqlalchemy.engine import make_url

    if url.startswith("unix://"):
        return None
    return make_url(url.replace("redis://", "postgresql://")).port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_without_test_urls_the_suite_starts_and_stops_its_own_servers(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text("from trading_maintenance_tests.conftest import *  # noqa: F403\n")
    (suite / "test_inner.py").write_text(INNER_TEST)
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_REDIS_URL", "TEST_PG_URL")}
    env.update(REPORT_PATH=str(report), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite), str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    urls = json.loads(report.read_text())
    ports = {name: _port_of(url) for name, url in urls.items()}
    assert ports["redis"] != 6379 and ports["pg"] != 5432, urls
    for port in ports.values():
        if port is not None:
            assert not _listening(port), f"private server on port {port} still running after the session"
