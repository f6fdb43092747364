"""The real webserver loads the one Definitions: every job, schedule and sensor is found through GraphQL."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from trading_maintenance.definitions import defs

QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name description }
        schedules { name cronSchedule executionTimezone description }
        sensors { name description }
        assetNodes { assetKey { path } }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(tmp_path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRADING_DATA_DIR": str(tmp_path / "data")}
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [str(bin_dir / "dagster-webserver"), "-w", str(Path(__file__).resolve().parents[2] / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=str(Path(__file__).resolve().parents[2]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"webserver exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("webserver did not answer /server_info within 120 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_every_job_schedule_and_sensor_is_served(webserver):
    response = httpx.post(f"{webserver}/graphql", json={"query": QUERY}, timeout=60)
    response.raise_for_status()
    nodes = response.json()["data"]["repositoriesOrError"]["nodes"]
    assert [n["location"]["name"] for n in nodes] == ["trading_maintenance"]
    repo = nodes[0]
    served_jobs = {j["name"] for j in repo["jobs"]}
    repository = defs.get_repository_def()
    expected_jobs = {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert expected_jobs <= served_jobs
    assert {"system_health_check_job", "emergency_maintenance_job"} <= served_jobs
    schedules = {s["name"]: s for s in repo["schedules"]}
    assert set(schedules) == {s.name for s in repository.schedule_defs}
    assert all(s["executionTimezone"] == "America/New_York" and s["description"] for s in schedules.values())
    assert {s["name"] for s in repo["sensors"]} == {s.name for s in repository.sensor_defs}
    assert ["system_health"] in [a["assetKey"]["path"] for a in repo["assetNodes"]]
