"""Benchmark: monthly market-data consolidation against DuckDB and a bare pyarrow decode.

    .venv/bin/python bench/market_data_bench.py            # 50 symbols x 21 days of 1-minute bars (~418k rows, ~1,050 files)
    .venv/bin/python bench/market_data_bench.py --large    # 200 symbols x 63 days (~5M rows, 12,600 files, 4 months)

Generates collector-like daily files (2% duplicate rows appended, rows shuffled) once, then times in
one run on the same data, each phase in its own process so peak memory is measured per phase:

- bare:     pyarrow.parquet.ParquetFile(path).read() of every file, nothing else (the floor: cost per file)
- polars:   one polars scan of all files (decode only)
- duckdb:   COPY (SELECT DISTINCT * ... ORDER BY symbol, timestamp) TO ... (FORMAT parquet, PARTITION_BY (symbol))
- project:  trading_maintenance.core.market_data.consolidate.consolidate_month for each month of the data: read,
            normalise, dedup (last written wins), sort, sanity and coverage, write zstd under a temporary
            name, fsync, read back and verify, rename, manifest; then 1 % of the daily files rewritten late
            and the months consolidated again (the re-run reads only what changed): once delivered again with
            rows the archives hold (the late files read, their archives not: the manifests' day digests
            prove those rows are already in them), once each with a corrected bar (every touched archive
            read and rewritten)

The previous round's output is renamed aside before a round and removed after the last one, for
both tools: on this machine's ext4 (no journal) a file created within a few minutes of a mass
delete costs ~0.7 ms of CPU instead of ~25 us (the allocator skips recently deleted inodes), so
removing 1,600 archives just before the timing charged the project's run with the bench's own
clean-up (the same holds across runs: start one at least ~6 minutes after the previous run, or
anything else, deleted thousands of files). The project runs with its configured concurrency
(performance.max_workers, 4 batches at a time), DuckDB with one thread per core.

DuckDB and project rounds alternate (--rounds of each, each round in a fresh process) so a busy
machine's load falls on both alike; each is reported as median and spread of wall and CPU seconds
(user + system of all the process's threads), and the ratios are those of the medians. On a shared
machine the CPU ratio is the steadier figure. The late files are restored after each round, so every
round sees the same data. Imports and the exchange calendar's first load are outside the timings.
Not a test: prints times, rows/s, ratios and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate_data(root: Path, symbols: int, days: int) -> dict:
    from trading_maintenance.core.common.market_hours import trading_days
    from trading_maintenance_tests.market_data.synth import collector_file, session_bars, write_daily

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


def rewrite_late_files(files: list[str], fraction: float, corrected: bool) -> dict[str, bytes]:
    """Rewrite a spread-out `fraction` of the daily files late: delivered again with three rows twice,
    and with `corrected` also one bar's volume corrected (so its archive must be rewritten);
    returns their original bytes, to restore them after the round."""
    import polars as pl

    originals = {}
    for path in files[:: max(1, round(1 / fraction))]:
        originals[path] = Path(path).read_bytes()
        df = pl.read_parquet(path)
        late = [df, df.head(3)]
        if corrected:
            late.append(df.head(1).with_columns(pl.col("volume") + 1))
        pl.concat(late).write_parquet(path, compression="snappy")
    return originals


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system time of this process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu


def set_aside(path: Path, out_dir: Path) -> None:
    """Move a previous round's output out of the way (removed when the bench ends, see the docstring)."""
    if path.exists():
        aside = out_dir / "set-aside"
        aside.mkdir(parents=True, exist_ok=True)
        path.rename(aside / f"{path.name}-{time.time_ns()}")


def phase(name: str, mdir: Path, months: list[str], workers: int, out_dir: Path) -> dict:
    files = sorted(str(p) for p in mdir.glob("*/*/*.parquet"))
    if name == "bare":
        import pyarrow.parquet as pq

        # ParquetFile.read is the fastest plain pyarrow decode measured here (read_table adds the
        # dataset layer and is 2-3x slower per small file), so it is the honest floor
        with Timer() as t:
            rows = sum(pq.ParquetFile(p).read().num_rows for p in files)
        return {"seconds": t.wall, "cpu": t.cpu, "rows": rows}
    if name == "polars":
        import polars as pl

        with Timer() as t:
            rows = pl.scan_parquet(files, hive_partitioning=False).collect().height
        return {"seconds": t.wall, "cpu": t.cpu, "rows": rows}
    if name == "duckdb":
        import duckdb

        target = out_dir / "duckdb"
        set_aside(target, out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()
        con.execute(f"SET threads TO {max(workers, 1)}")
        with Timer() as t:
            con.execute(
                f"COPY (SELECT DISTINCT * FROM read_parquet('{mdir}/*/*/*.parquet') ORDER BY symbol, timestamp) "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY (symbol), COMPRESSION zstd)"
            )
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}/*/*.parquet')").fetchone()[0]
        return {"seconds": t.wall, "cpu": t.cpu, "rows_out": rows}
    if name == "project":
        from trading_maintenance.core.market_data.consolidate import consolidate_month
        from trading_maintenance.core.market_data.layout import archive_dir_for
        from trading_maintenance.core.market_data.months import month_sessions

        set_aside(archive_dir_for(mdir), out_dir)
        for m in months:
            month_sessions(m)  # exchange calendar loaded outside the timing
        with Timer() as full:
            summaries = [consolidate_month(mdir, m, max_workers=workers).summary() for m in months]
        timed = {}
        for kind, corrected in (("rerun", False), ("corrected", True)):
            originals = rewrite_late_files(files, LATE_FRACTION, corrected)
            try:
                with Timer() as rerun:
                    reruns = [consolidate_month(mdir, m, max_workers=workers).summary() for m in months]
            finally:
                for path, data in originals.items():
                    Path(path).write_bytes(data)
            timed[kind] = (rerun, reruns)
        (rerun, reruns), (corrected_rerun, corrected_reruns) = timed["rerun"], timed["corrected"]
        return {
            "seconds": full.wall,
            "cpu": full.cpu,
            "rerun_seconds": rerun.wall,
            "rerun_cpu": rerun.cpu,
            "corrected_seconds": corrected_rerun.wall,
            "corrected_cpu": corrected_rerun.cpu,
            "corrected_archives_written": sum(s["archives_written"] for s in corrected_reruns),
            "late_files": len(originals),
            "rerun_files_read": sum(s["files_read"] for s in reruns),
            "rerun_files_reused": sum(s["files_reused"] for s in reruns),
            "rerun_archives_written": sum(s["archives_written"] for s in reruns),
            "rerun_failed": sum(s["groups_failed"] for s in reruns),
            "rows": sum(s["rows_in"] for s in summaries),
            "rows_out": sum(s["rows_out"] for s in summaries),
            "duplicates_removed": sum(s["duplicates_removed"] for s in summaries),
            "archives_verified": sum(s["archives_verified"] for s in summaries),
            "groups_failed": sum(s["groups_failed"] for s in summaries),
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


def spread(values: list[float]) -> str:
    """median [min-max] of a few rounds"""
    return f"{statistics.median(values):7.3f} [{min(values):.3f}-{max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="200 symbols x 63 days")
    parser.add_argument("--symbols", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="DuckDB's threads (default: one per core)")
    parser.add_argument("--project-workers", type=int, help="the project's batches at a time (default: its performance.max_workers)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating DuckDB and project rounds")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--data", help="a folder kept by an earlier --keep run (its data is reused)")
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
    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="md-bench-"))
    try:
        t = time.perf_counter()
        if args.data:
            info = json.loads((root / "info.json").read_text())
            print(f"reusing {info['files']} files, {info['rows']:,} rows in {root}")
        else:
            info = generate_data(root, symbols, days)
            (root / "info.json").write_text(json.dumps(info))
            print(
                f"generated {info['files']} files, {info['rows']:,} rows ({symbols} symbols x {days} days, "
                f"months {', '.join(info['months'])}) in {time.perf_counter() - t:.1f}s"
            )
        from trading_maintenance.settings import Performance

        project_workers = args.project_workers or Performance().max_workers
        load_before = os.getloadavg()[0]
        runs: dict[str, list[dict]] = {"bare": [run_child("bare", info, args.workers, root / "out")],
                                       "polars": [run_child("polars", info, args.workers, root / "out")],
                                       "duckdb": [], "project": []}
        for _ in range(max(1, args.rounds)):
            for name in ("duckdb", "project"):
                runs[name].append(run_child(name, info, project_workers if name == "project" else args.workers, root / "out"))
        print(f"cpus {os.cpu_count()}, duckdb threads {args.workers}, project workers {project_workers}, rounds {args.rounds}, "
              f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
        rows = info["rows"]
        wall = {name: [r["seconds"] for r in rs] for name, rs in runs.items()}
        cpu = {name: [r["cpu"] for r in rs] for name, rs in runs.items()}
        med = statistics.median
        print(f"\n{'phase':10s} {'wall s median [spread]':>28s} {'cpu s median [spread]':>28s} {'rows/s (wall)':>14s} {'peak RSS MB':>12s}")
        for name, rs in runs.items():
            print(f"{name:10s} {spread(wall[name]):>28s} {spread(cpu[name]):>28s} {rows / med(wall[name]):14,.0f} {max(r['peak_rss_mb'] for r in rs):12.1f}")
        project = runs["project"]
        p = project[-1]
        print(
            f"\nproject: {p['rows']:,} rows in, {p['rows_out']:,} out, {p['duplicates_removed']:,} duplicates removed, "
            f"{p['archives_verified']} archives verified, {p['groups_failed']} failed, "
            f"{p['bytes_before']:,} -> {p['bytes_after']:,} bytes ({p['bytes_before'] / max(p['bytes_after'], 1):.2f}x)"
        )
        print(f"duckdb rows out: {runs['duckdb'][-1]['rows_out']:,}")
        print(
            f"project speed vs duckdb: wall {med(wall['duckdb']) / med(wall['project']):.2f}x, "
            f"cpu {med(cpu['duckdb']) / med(cpu['project']):.2f}x (goal >= 1.2 on --large)"
        )
        rerun_wall = [r["rerun_seconds"] for r in project]
        rerun_cpu = [r["rerun_cpu"] for r in project]
        print(
            f"re-run after {p['late_files']} late files ({LATE_FRACTION:.0%}): wall {spread(rerun_wall)}s, cpu {spread(rerun_cpu)}s; "
            f"of the full run: wall {med(r['rerun_seconds'] / r['seconds'] for r in project):.1%}, "
            f"cpu {med(r['rerun_cpu'] / r['cpu'] for r in project):.1%} (goal <= 10%); "
            f"{p['rerun_files_read']} files read, {p['rerun_files_reused']} reused, "
            f"{p['rerun_archives_written']} archives rewritten, {p['rerun_failed']} failed"
        )
        print(
            f"re-run after {p['late_files']} late files each with a corrected bar: wall {spread([r['corrected_seconds'] for r in project])}s, "
            f"cpu {spread([r['corrected_cpu'] for r in project])}s; of the full run: "
            f"wall {med(r['corrected_seconds'] / r['seconds'] for r in project):.1%}, cpu {med(r['corrected_cpu'] / r['cpu'] for r in project):.1%}; "
            f"{p['corrected_archives_written']} archives rewritten"
        )
        print(
            f"project speed vs bare decode: wall {med(wall['bare']) / med(wall['project']):.2f}x, "
            f"cpu {med(cpu['bare']) / med(cpu['project']):.2f}x (goal >= 0.8)"
        )
        print(f"project speed vs polars scan: wall {med(wall['polars']) / med(wall['project']):.2f}x, cpu {med(cpu['polars']) / med(cpu['project']):.2f}x")
        print(f"project peak RSS: {max(r['peak_rss_mb'] for r in project):.0f} MB (goal < 1024 on --large)")
    finally:
        shutil.rmtree(root / "out" / "set-aside", ignore_errors=True)
        if args.keep or args.data:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
