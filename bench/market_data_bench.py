"""Benchmark: monthly market-data consolidation against DuckDB and a bare pyarrow decode.

    .venv/bin/python bench/market_data_bench.py            # 50 symbols x 21 days of 1-minute bars (~418k rows, ~1,050 files)
    .venv/bin/python bench/market_data_bench.py --large    # 200 symbols x 63 days (~1.7M rows, ~4,200 files)

Generates collector-like daily files (2% duplicate rows appended, rows shuffled) once, then times in
one run on the same data, each phase in its own process so peak memory is measured per phase:

- bare:     pyarrow.parquet.ParquetFile(path).read() of every file, nothing else (the floor: cost per file)
- polars:   one polars scan of all files (decode only)
- duckdb:   COPY (SELECT DISTINCT * ... ORDER BY symbol, timestamp) TO ... (FORMAT parquet, PARTITION_BY (symbol))
- project:  trading_maintenance.core.market_data.consolidate.consolidate_month for each month of the data: read,
            normalise, dedup (last written wins), sort, sanity and coverage, write zstd under a temporary
            name, fsync, read back and verify, rename, manifest; then 1 % of the daily files rewritten late
            and the months consolidated again (the re-run reads only what changed)

Imports and the exchange calendar's first load are outside the timings (paid once per process).
Not a test: prints times, rows/s, ratios and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate_data(root: Path, symbols: int, days: int) -> dict:
    from trading_maintenance_tests.market_data.synth import collector_file, session_bars, write_daily
    from trading_maintenance.core.common.market_hours import trading_days

    mdir = root / "parquet" / "market_data"
    sessions = [d for d in trading_days(date(2024, 1, 2), date(2024, 12, 31)) if d.month not in (11, 7)][:days]  # full sessions
    files = rows = 0
    for di, day in enumerate(sessions):
        for i in range(symbols):
            sym = f"S{i:03d}"
            df = collector_file(session_bars(sym, day, base_price=20.0 + i), dup_fraction=0.02, shuffle=True, seed=di * 1000 + i)
            write_daily(mdir, df, sym, "1min", day)
            files += 1
            rows += df.height
    months = sorted({d.isoformat()[:7] for d in sessions})
    return {"files": files, "rows": rows, "months": months, "mdir": str(mdir)}


LATE_FRACTION = 0.01  # share of daily files the collector rewrites after the month was consolidated


def rewrite_late_files(files: list[str], fraction: float) -> int:
    """Rewrite a spread-out `fraction` of the daily files with a few more rows (late corrections)."""
    import polars as pl

    chosen = files[:: max(1, round(1 / fraction))]
    for path in chosen:
        df = pl.read_parquet(path)
        pl.concat([df, df.head(3)]).write_parquet(path, compression="snappy")
    return len(chosen)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, mdir: Path, months: list[str], workers: int, out_dir: Path) -> dict:
    files = sorted(str(p) for p in mdir.glob("*/*/*.parquet"))
    if name == "bare":
        import pyarrow.parquet as pq

        t = time.perf_counter()
        # ParquetFile.read is the fastest plain pyarrow decode measured here (read_table adds the
        # dataset layer and is 2-3x slower per small file), so it is the honest floor
        rows = sum(pq.ParquetFile(p).read().num_rows for p in files)
        return {"seconds": time.perf_counter() - t, "rows": rows}
    if name == "polars":
        import polars as pl

        t = time.perf_counter()
        rows = pl.scan_parquet(files).collect().height
        return {"seconds": time.perf_counter() - t, "rows": rows}
    if name == "duckdb":
        import duckdb

        target = out_dir / "duckdb"
        shutil.rmtree(target, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()
        con.execute(f"SET threads TO {max(workers, 1)}")
        t = time.perf_counter()
        con.execute(
            f"COPY (SELECT DISTINCT * FROM read_parquet('{mdir}/*/*/*.parquet') ORDER BY symbol, timestamp) "
            f"TO '{target}' (FORMAT parquet, PARTITION_BY (symbol), COMPRESSION zstd)"
        )
        seconds = time.perf_counter() - t
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}/*/*.parquet')").fetchone()[0]
        return {"seconds": seconds, "rows_out": rows}
    if name == "project":
        from trading_maintenance.core.market_data.consolidate import consolidate_month
        from trading_maintenance.core.market_data.layout import archive_dir_for
        from trading_maintenance.core.market_data.months import month_sessions

        shutil.rmtree(archive_dir_for(mdir), ignore_errors=True)
        for m in months:
            month_sessions(m)  # exchange calendar loaded outside the timing
        t = time.perf_counter()
        summaries = [consolidate_month(mdir, m, max_workers=workers).summary() for m in months]
        seconds = time.perf_counter() - t
        failed = sum(s["groups_failed"] for s in summaries)
        late = rewrite_late_files(files, LATE_FRACTION)
        t = time.perf_counter()
        reruns = [consolidate_month(mdir, m, max_workers=workers).summary() for m in months]
        rerun_seconds = time.perf_counter() - t
        return {
            "rerun_seconds": rerun_seconds,
            "late_files": late,
            "rerun_files_read": sum(s["files_read"] for s in reruns),
            "rerun_files_reused": sum(s["files_reused"] for s in reruns),
            "rerun_failed": sum(s["groups_failed"] for s in reruns),
            "seconds": seconds,
            "rows": sum(s["rows_in"] for s in summaries),
            "rows_out": sum(s["rows_out"] for s in summaries),
            "duplicates_removed": sum(s["duplicates_removed"] for s in summaries),
            "archives_verified": sum(s["archives_verified"] for s in summaries),
            "groups_failed": failed,
            "bytes_before": sum(s["bytes_before"] for s in summaries),
            "bytes_after": sum(s["bytes_after"] for s in summaries),
        }
    raise SystemExit(f"unknown phase {name}")


def run_child(name: str, info: dict, workers: int, out_dir: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--mdir", info["mdir"], "--months", ",".join(info["months"]),
           "--workers", str(workers), "--out", str(out_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="200 symbols x 63 days")
    parser.add_argument("--symbols", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="threads for the project and DuckDB")
    parser.add_argument("--repeat", type=int, default=1, help="runs per phase; the best time is reported")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--mdir", help=argparse.SUPPRESS)
    parser.add_argument("--months", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:  # child process: one phase, JSON on the last line
        result = phase(args.phase, Path(args.mdir), args.months.split(","), args.workers, Path(args.out))
        result["peak_rss_mb"] = round(_peak_mb(), 1)
        print(json.dumps(result))
        return

    symbols = args.symbols or (200 if args.large else 50)
    days = args.days or (63 if args.large else 21)
    root = Path(tempfile.mkdtemp(prefix="md-bench-"))
    try:
        t = time.perf_counter()
        info = generate_data(root, symbols, days)
        print(f"generated {info['files']} files, {info['rows']:,} rows ({symbols} symbols x {days} days, months {', '.join(info['months'])}) in {time.perf_counter() - t:.1f}s")
        print(f"cpus {os.cpu_count()}, workers {args.workers}, load average {os.getloadavg()[0]:.2f}")
        results = {}
        for name in ("bare", "polars", "duckdb", "project"):
            runs = [run_child(name, info, args.workers, root / "out") for _ in range(args.repeat)]
            results[name] = min(runs, key=lambda r: r["seconds"])
        rows = info["rows"]
        print(f"\n{'phase':10s} {'seconds':>8s} {'rows/s':>12s} {'peak RSS MB':>12s}")
        for name, r in results.items():
            print(f"{name:10s} {r['seconds']:8.3f} {rows / r['seconds']:12,.0f} {r['peak_rss_mb']:12.1f}")
        p = results["project"]
        print(
            f"\nproject: {p['rows']:,} rows in, {p['rows_out']:,} out, {p['duplicates_removed']:,} duplicates removed, "
            f"{p['archives_verified']} archives verified, {p['groups_failed']} failed, "
            f"{p['bytes_before']:,} -> {p['bytes_after']:,} bytes ({p['bytes_before'] / max(p['bytes_after'], 1):.2f}x)"
        )
        print(f"duckdb rows out: {results['duckdb']['rows_out']:,}")
        print(f"project speed vs duckdb: {results['duckdb']['seconds'] / p['seconds']:.2f}x (goal >= 1.2 on --large)")
        print(
            f"re-run after {p['late_files']} late files ({LATE_FRACTION:.0%}): {p['rerun_seconds']:.3f}s, "
            f"{p['rerun_seconds'] / p['seconds']:.1%} of the full run (goal <= 10%); "
            f"{p['rerun_files_read']} files read, {p['rerun_files_reused']} reused, {p['rerun_failed']} failed"
        )
        print(f"project speed vs bare decode: {results['bare']['seconds'] / p['seconds']:.2f}x (goal >= 0.8)")
        print(f"project speed vs polars scan: {results['polars']['seconds'] / p['seconds']:.2f}x")
        print(f"project peak RSS: {p['peak_rss_mb']:.0f} MB (goal < 1024 on --large)")
    finally:
        if args.keep:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
