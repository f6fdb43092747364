"""Load GET /maintenance/status and GET /maintenance/history?limit=50 with 50 concurrent clients for
20 s each, against the API under uvicorn over an instance holding 5,000 runs; requests/s, p50, p99.

    .venv/bin/python bench/api_bench.py [--runs 5000] [--clients 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seed_runs(instance, count: int) -> None:
    import dagster as dg

    @dg.op
    def step():
        return 1

    @dg.job(name="log_rotation_job", tags={"maintenance/task": "log_rotation"})
    def job():
        step()

    statuses = [dg.DagsterRunStatus.SUCCESS] * 9 + [dg.DagsterRunStatus.FAILURE]
    for index in range(count):
        instance.create_run_for_job(job, status=statuses[index % len(statuses)],
                                    tags={"maintenance/task": "log_rotation", "maintenance/trigger": "bench"})


async def load(base: str, path: str, clients: int, seconds: float) -> list[float]:
    import httpx

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(client):
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(path)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    # API_BENCH_DIR: a folder seeded by an earlier run (seeding 5,000 runs takes minutes).
    work = Path(os.environ.get("API_BENCH_DIR") or tempfile.mkdtemp(prefix="api_bench_"))
    (work / "data").mkdir(exist_ok=True)
    (work / "maintenance.yml").write_text(f"data_dir: {work / 'data'}\nservices: []\n")
    os.environ.update(DAGSTER_HOME=str(work / "home"), MAINTENANCE_CONFIG=str(work / "maintenance.yml"),
                      TRADING_DATA_DIR=str(work / "data"), MAINTENANCE_ENV_FILE="")
    from trading_maintenance.instance import open_instance

    instance, _ = open_instance()
    started = time.perf_counter()
    seed_runs(instance, max(0, args.runs - instance.get_runs_count()))
    print(f"seeded {args.runs} runs in {time.perf_counter() - started:.1f}s under {work}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The server in its own process, so the load generator does not share its interpreter lock.
    server = subprocess.Popen([sys.executable, "-m", "trading_maintenance.cli", "api", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health").raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    base = f"http://127.0.0.1:{port}"
    for path in ("/maintenance/status", "/maintenance/history?limit=50"):
        latencies = asyncio.run(load(base, path, args.clients, args.seconds))
        ordered = sorted(latencies)
        p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
        print(f"GET {path}: {len(latencies) / args.seconds:.0f} req/s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms ({len(latencies)} requests, {args.clients} clients, {args.seconds:g} s)")
    server.terminate()
    server.wait(timeout=30)


if __name__ == "__main__":
    main()
