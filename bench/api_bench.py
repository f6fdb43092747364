"""Load GET /maintenance/status and GET /maintenance/history?limit=50 with 50 concurrent clients for
20 s each, against the API as `trading-maintenance api` serves it (its own process: uvicorn, uvloop,
httptools) over an instance holding 5,000 runs; requests/s, p50, p99 and the server's CPU seconds.

    .venv/bin/python bench/api_bench.py [--runs 5000] [--clients 50] [--seconds 20] [--client wrk|python]
    API_BENCH_DIR=/tmp/api-bench-seed .venv/bin/python bench/api_bench.py   # reuse a seeded folder

The load generator is wrk (Debian's package, installed with apt-get when missing): one C thread keeping
50 keep-alive connections busy (closed loop: each sends its next request when the last is answered),
latencies measured per request by wrk itself, timeouts set to 30 s so a slow answer is counted, not
dropped. The fallback (`--client python`, or no wrk) is a minimal keep-alive HTTP/1.1 client on asyncio
streams in this process; on a 2-core machine it spends a core of its own and its own scheduling shows
in the latencies it reports, so its figures are the client's as much as the server's (the httpx client
this bench used before spent far more CPU than the server and reported ~20x its latencies).
No warm-up phase: the server computes the status and default history answers once before it
listens, so the first requests find them.
Goal (issue 12): p99 under 100 ms on both routes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
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
    """Closed-loop keep-alive HTTP/1.1 GETs over plain asyncio streams (httpx's pool cost more CPU per
    request than the server did); every answer must be a 200 with a Content-Length body."""
    host, port = base.removeprefix("http://").split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker():
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                if not lines[0].startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"GET {path}: {lines[0].decode(errors='replace')}")
                length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.0f %.0f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def ensure_wrk() -> str | None:
    if not shutil.which("wrk"):
        print("wrk is missing: installing Debian's package with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def load_wrk(wrk: str, url: str, clients: int, seconds: float, script: Path) -> tuple[int, float, float, float]:
    """(requests, seconds, p50 s, p99 s) as wrk measured them; any error or non-2xx answer fails the bench."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([wrk, "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script), url],
                         check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    requests, duration_us, errors, p50_us, p99_us = (float(value) for value in line.split()[1:])
    if errors:
        raise SystemExit(f"wrk: {errors:.0f} errors (connect, read, write, timeout or non-2xx) against {url}")
    print(f"  (wrk's own CPU: {after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.1f} s)")
    return int(requests), duration_us / 1e6, p50_us / 1e6, p99_us / 1e6


def load_python(base: str, path: str, clients: int, seconds: float) -> tuple[int, float, float, float]:
    import gc

    gc.collect()
    gc.freeze()  # this process holds Dagster's objects too: full collections would stall the client
    cpu_before = time.process_time()
    latencies = sorted(asyncio.run(load(base, path, clients, seconds)))
    print(f"  (the client's own CPU: {time.process_time() - cpu_before:.1f} s)")
    return len(latencies), seconds, statistics.median(latencies), latencies[max(0, int(len(latencies) * 0.99) - 1)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread included (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk")
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
    wrk = ensure_wrk() if args.client == "wrk" else None
    script = work / "wrk_report.lua"
    script.write_text(WRK_REPORT)
    print(f"client: {'wrk, 1 thread' if wrk else 'Python asyncio streams (fallback)'}; {args.clients} connections; "
          f"cores: {os.cpu_count()}; load before: {os.getloadavg()[0]:.1f}")
    goals = []
    for path in ("/maintenance/status", "/maintenance/history?limit=50"):
        cpu_before = cpu_seconds(server.pid)
        if wrk:
            requests, seconds, p50, p99 = load_wrk(wrk, base + path, args.clients, args.seconds, script)
        else:
            requests, seconds, p50, p99 = load_python(base, path, args.clients, args.seconds)
        server_cpu = cpu_seconds(server.pid) - cpu_before
        print(f"GET {path}: {requests / seconds:.0f} req/s, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
              f"({requests} requests in {seconds:.1f} s; server CPU {server_cpu:.1f} s, "
              f"{server_cpu / max(requests, 1) * 1e6:.0f} us a request; load {os.getloadavg()[0]:.1f})")
        goals.append(f"  p99 {path:<32} {p99 * 1000:6.1f} ms  (goal < 100 ms: {'met' if p99 < 0.1 else 'NOT met'})")
    print("goals:", *goals, sep="\n")
    server.terminate()
    server.wait(timeout=30)


if __name__ == "__main__":
    main()
