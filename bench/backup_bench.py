"""Backup throughput: this project's archive writer (tar + zstd -3 multithreaded + SHA-256 manifest)
against `tar | zstd -3 -T0` and `tar | gzip -6` on the same generated market-data tree, in one run.

    .venv/bin/python bench/backup_bench.py            # ~250 MB of parquet market data
    .venv/bin/python bench/backup_bench.py --large    # ~1 GB

Prints seconds, MB/s, compression ratio, and the ratio of our throughput to tar|zstd (goal >= 0.7).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generate(root: Path, target_mb: int) -> int:
    """Realistic daily 1-minute bars (random walk prices, snappy parquet), until target_mb is reached."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(7)
    total = 0
    day = date(2026, 1, 2)
    symbols = [f"SYM{i:03d}" for i in range(400)]
    i = 0
    while total < target_mb * 1024 * 1024:
        symbol = symbols[i % len(symbols)]
        if i and i % len(symbols) == 0:
            day += timedelta(days=1)
        i += 1
        n = 390 * 4
        start = datetime(day.year, day.month, day.day, 14, 30, tzinfo=timezone.utc)
        close = 100 + np.cumsum(rng.normal(0, 0.05, n))
        frame = pl.DataFrame({
            "symbol": [symbol] * n,
            "timestamp": pl.datetime_range(start, start + timedelta(seconds=15 * (n - 1)), interval="15s", time_unit="us", time_zone="UTC", eager=True),
            "timeframe": ["1min"] * n,
            "open": close + rng.normal(0, 0.01, n), "high": close + 0.05, "low": close - 0.05, "close": close,
            "volume": rng.integers(100, 100000, n),
            "asset_type": ["stock"] * n,
        })
        path = root / "parquet" / "market_data" / symbol / "1min" / f"{day.isoformat()}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="snappy")
        total += path.stat().st_size
    return total


def drop_cache_hint(root: Path) -> None:
    for p in root.rglob("*"):  # warm the page cache equally for every contender
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass


def shell(cmd: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--mb", type=int)
    args = parser.parse_args()
    target = args.mb or (1024 if args.large else 250)

    from trading_maintenance.core.backups.run import collect_trading_files, create_backup

    work = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    try:
        data = work / "data"
        size = generate(data, target)
        drop_cache_hint(data)
        mb = size / 1e6
        print(f"tree: {mb:.1f} MB in {sum(1 for _ in data.rglob('*.parquet'))} parquet files; cores: {os.cpu_count()}")
        rows = []

        t = shell(f"tar -cf - parquet | zstd -3 -T0 -q -o {work}/peer.tar.zst", data)
        rows.append(("tar | zstd -3 -T0", t, (work / "peer.tar.zst").stat().st_size))
        t = shell(f"tar -cf - parquet | gzip -6 > {work}/peer.tar.gz", data)
        rows.append(("tar | gzip -6", t, (work / "peer.tar.gz").stat().st_size))

        for label, fmt, secret in [("project tar.zst", "tar.zst", None), ("project tar.zst + AES-256-GCM", "tar.zst", "bench-key-123456"),
                                   ("project tar.gz", "tar.gz", None)]:
            dest = work / f"out-{fmt}-{bool(secret)}"
            started = time.perf_counter()
            files, _, _ = collect_trading_files(data, ["parquet"], 0, datetime.now(timezone.utc))
            outcome = create_backup(dest_dir=dest, fmt=fmt, secret=secret, parts=["trading_data"], config_path=None,
                                    effective_settings={}, secret_keys=set(), data_dir=data, trading_files=files)
            rows.append((label, time.perf_counter() - started, outcome.archive.size))
            shutil.rmtree(dest)

        peer = rows[0][1]
        print(f"{'contender':34} {'seconds':>8} {'MB/s':>8} {'ratio':>6} {'vs tar|zstd':>12}")
        for label, seconds, out in rows:
            print(f"{label:34} {seconds:8.2f} {mb / seconds:8.1f} {size / out:6.2f} {peer / seconds:11.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
