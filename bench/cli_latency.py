"""Benchmark: how long the CLI makes a person wait before any work starts.

Times, in one run and interleaved round by round (so a busy moment hits every command alike):
`python -c "import dagster"` (the floor every Dagster tool pays), `import trading_maintenance.definitions`,
`trading-maintenance status`, `maintenance history`, `maintenance schedule` (these three read the instance
without loading the definitions), and a dry run of the health check through `maintenance run`. Prints the
median and the spread (min-max) of each over the rounds, and each one's ratio to `import dagster`.
Run it alone on the machine.

    .venv/bin/python bench/cli_latency.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def commands() -> dict[str, list[str]]:
    cli = str(BIN / "trading-maintenance")
    return {
        "import dagster": [sys.executable, "-c", "import dagster"],
        "import definitions": [sys.executable, "-c", "import trading_maintenance.definitions"],
        "status": [cli, "status"],
        "history": [cli, "maintenance", "history"],
        "schedule": [cli, "maintenance", "schedule"],
        "health check dry run": [cli, "maintenance", "run", "--task", "system_health_check", "--dry-run"],
    }


def time_once(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tm-cli-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        env = dict(os.environ, DAGSTER_HOME=str(Path(scratch) / "home"), TRADING_DATA_DIR=str(data_dir),
                   DAGSTER_DISABLE_TELEMETRY="1")
        Path(env["DAGSTER_HOME"]).mkdir()
        todo = commands()
        for argv in todo.values():  # warm the page cache and create the instance once
            time_once(argv, env)
        times: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(args.rounds):
            for name, argv in todo.items():
                times[name].append(time_once(argv, env))
    floor = statistics.median(times["import dagster"])
    print(f"{'command':<24} {'median s':>9} {'min-max s':>14} {'x import dagster':>17}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<24} {median:>9.2f} {min(values):>6.2f}-{max(values):<7.2f} {median / floor:>17.2f}")
    print(f"rounds: {args.rounds}")


if __name__ == "__main__":
    main()
