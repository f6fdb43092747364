"""Benchmark: the security audit's secret scan vs ripgrep (and detect-secrets on a slice).

Generates ~200 MB (--large: 1 GB) of realistic log lines (HTTP request lines with hex ids, JSON
events, Python tracebacks) with 50 planted secrets and 120 look-alike decoys, then times in one
run: this project's scanner (built inside the timing, its patterns compiled, as each audit run
does; imports outside), `rg -c` with the equivalent combined pattern (the scanner's pre-filter),
alternating for --rounds rounds (median [min-max] of each, and the ratio of the medians), and
detect-secrets on a slice when it is installed. Prints times, MB/s and ratios, and how many
planted secrets each found and how many decoys this project reported.

    .venv/bin/python bench/secrets_scan_bench.py [--mb 200] [--large] [--keep DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trading_maintenance.core.security import scan  # noqa: E402
from trading_maintenance.core.security.rules import combined_prefilter  # noqa: E402
from trading_maintenance_tests.security.samples import DECOYS, planted_lines  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META", "SPY", "QQQ", "AMD", "PLTR"]
SERVICES = ["data_collector", "strategy_engine", "risk_manager", "trade_executor", "scheduler"]


def noise_block(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = rng.random()
        h = f"{rng.getrandbits(128):032x}"
        ts = f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z"
        if r < 0.45:
            out.append(
                f'{ts} INFO {rng.choice(SERVICES)} 10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)} - '
                f'"GET /v2/orders/{h}?symbols={rng.choice(SYMBOLS)}&limit=50 HTTP/1.1" {rng.choice((200, 200, 200, 404, 429))} '
                f'{rng.randint(100, 9999)} rid={h[:16]}{rng.getrandbits(64):016x} {rng.random() * 90:.2f}ms'
            )
        elif r < 0.85:
            out.append(json.dumps({
                "ts": ts, "level": rng.choice(("info", "debug", "warning")), "service": rng.choice(SERVICES),
                "event": rng.choice(("order_submitted", "order_filled", "signal", "bar_received", "risk_check")),
                "order_id": h, "symbol": rng.choice(SYMBOLS), "qty": rng.randint(1, 500), "price": round(rng.uniform(5, 900), 2),
                "strategy": rng.choice(("momentum", "mean_reversion", "pairs")), "latency_ms": round(rng.random() * 40, 3),
            }))
        else:
            out.append(f"{ts} ERROR {rng.choice(SERVICES)} Traceback (most recent call last):")
            for depth in range(rng.randint(2, 5)):
                out.append(
                    f'  File "/app/services/{rng.choice(SERVICES)}/module_{depth}.py", line {rng.randint(1, 900)}, '
                    f"in handle_{h[depth * 4:depth * 4 + 6]}"
                )
                out.append(f"    result = self.client.request(payload, timeout={rng.randint(1, 30)})")
            out.append(f"ConnectionError: HTTPSConnectionPool(host='data.alpaca.markets', port=443): Read timed out. (read timeout={rng.randint(1, 30)})")
    return out


def generate(root: Path, total_mb: int, seed: int = 1) -> tuple[list[tuple[str, str]], int]:
    rng = random.Random(seed)
    planted: list[tuple[str, str, str]] = []
    s = 0
    while len(planted) < 50:
        planted += planted_lines(random.Random(1000 + s))
        s += 1
    planted = planted[:50]
    decoys = [DECOYS[i % len(DECOYS)] for i in range(120)]
    specials = [("p", p) for p in planted] + [("d", d) for d in decoys]
    rng.shuffle(specials)
    files = 8
    per_file = total_mb * 1_000_000 // files
    logs = root / "logs"
    logs.mkdir(parents=True)
    names = [f"trading_system.log.{i}" for i in range(1, files)] + ["trading_system.log"]
    chunks = [specials[i::files] for i in range(files)]
    block = noise_block(rng, 20000)
    block_text = "\n".join(block) + "\n"
    written = 0
    for name, extra in zip(names, chunks):
        with open(logs / name, "w") as handle:
            size = 0
            pieces = max(1, per_file // len(block_text))
            slots = sorted(rng.sample(range(pieces), min(len(extra), pieces)))
            k = 0
            for piece in range(pieces):
                if rng.random() < 0.5:  # vary the noise so files are not copies
                    block = noise_block(rng, 2000) + block[2000:]
                    block_text = "\n".join(block) + "\n"
                handle.write(block_text)
                size += len(block_text)
                while k < len(extra) and k < len(slots) and slots[k] == piece:
                    kind, item = extra[k]
                    line = item[2] if kind == "p" else item
                    handle.write(line + "\n")
                    size += len(line) + 1
                    k += 1
            for kind, item in extra[k:]:
                line = item[2] if kind == "p" else item
                handle.write(line + "\n")
            written += size
    return [(r, v) for r, v, _ in planted], written


def spread(values: list[float]) -> str:
    """median [min-max]"""
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--large", action="store_true", help="1 GB")
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of this project's scan and ripgrep's")
    args = parser.parse_args()
    total_mb = 1000 if args.large else args.mb
    root = args.keep or Path(tempfile.mkdtemp(prefix="secrets-bench-"))
    t0 = time.perf_counter()
    planted, _ = generate(root, total_mb)
    files = sorted((root / "logs").iterdir())
    size = sum(p.stat().st_size for p in files)
    print(f"generated {size / 1e6:.0f} MB in {len(files)} files in {time.perf_counter() - t0:.1f}s: 50 planted, 120 decoys")

    # warm the page cache for every contender alike
    for p in files:
        p.read_bytes()

    rg = shutil.which("rg")
    if not rg:
        print("ripgrep is missing: installing Debian's package with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "ripgrep"], check=False, stdout=subprocess.DEVNULL)
        rg = shutil.which("rg")
    import numpy  # noqa: F401 - imports outside the timings (the scanner loads numpy when built)

    planted_prints = {scan.fingerprint(r, v) for r, v in planted}
    ours_times: list[float] = []
    rg_times: list[float] = []
    hits, false_reports = len(planted), 0
    for _ in range(args.rounds):  # alternating, so a busy machine's load falls on both alike
        t = time.perf_counter()
        # built inside the timing, as every audit run builds it (its patterns compiled), as rg compiles its own
        scanner = scan.SecretScanner()
        findings = []
        for result in scanner.scan_files((p, None) for p in files):  # as the security audit scans: several files at once
            findings += result.findings
        ours_times.append(time.perf_counter() - t)
        found_prints = {f.fingerprint for f in findings}
        hits = min(hits, len(planted_prints & found_prints))  # the worst round's, so a miss in any round shows
        false_reports = max(false_reports, len([f for f in findings if f.fingerprint not in planted_prints]))
        if rg:
            t = time.perf_counter()
            out = subprocess.run([rg, "-c", "--no-filename", combined_prefilter(), *map(str, files)], capture_output=True, text=True)
            rg_times.append(time.perf_counter() - t)
            lines = sum(int(x) for x in out.stdout.split() if x.isdigit())
    ours = statistics.median(ours_times)
    print(f"trading-maintenance scan ({args.rounds} rounds, engine {scanner.engine.name}): {spread(ours_times)} s  "
          f"{size / 1e6 / ours:.0f} MB/s  planted found {hits}/50 and decoys/other reported {false_reports} (worst round)")
    if rg:
        rg_s = statistics.median(rg_times)
        print(f"ripgrep -c (combined pattern): {spread(rg_times)} s  {size / 1e6 / rg_s:.0f} MB/s  matching lines {lines} "
              "(candidates incl. decoys; no validation)")
        ratios = sorted(r / o for r, o in zip(rg_times, ours_times))
        print(f"throughput ratio ours/ripgrep: {rg_s / ours:.2f}x of the medians, each round's own "
              f"{statistics.median(ratios):.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}] (goal >= 1.0x)")
    else:
        print("ripgrep not installed (apt-get install ripgrep)")

    try:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        print("detect-secrets not installed (pip install detect-secrets): skipped")
    else:
        slice_path = root / "slice.log"
        slice_bytes = 1_000_000
        lines = []
        with open(files[0]) as handle:
            got = 0
            for line in handle:
                lines.append(line)
                got += len(line)
                if got >= slice_bytes:
                    break
        plant_lines = [line for _, _, line in (x for s in range(4) for x in planted_lines(random.Random(1000 + s)))][:50]
        slice_path.write_text("".join(lines) + "\n".join(plant_lines) + "\n")
        slice_size = slice_path.stat().st_size
        t = time.perf_counter()
        with default_settings():
            collection = SecretsCollection()
            collection.scan_file(str(slice_path))
        ds = time.perf_counter() - t
        found_lines = {s.line_number for _, s in collection}
        first_plant = len(lines) + 1
        ds_hits = len({n for n in found_lines if n >= first_plant})
        print(
            f"detect-secrets on a {slice_size / 1e6:.1f} MB slice: {ds:.2f}s  {slice_size / 1e6 / ds:.2f} MB/s  "
            f"planted lines found {ds_hits}/50  other lines reported {len(found_lines) - ds_hits}"
        )

    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
