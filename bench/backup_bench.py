"""Backup throughput in one run, on one generated market-data tree (~262 MB of parquet by default):

  * `tar | zstd -3 -T0` and `tar | gzip -6` (the archive peers) and this project's tar.zst archive;
  * this project's repository (chunks, zstd, AES-256-GCM): a first backup, a second after 1 % of the
    files changed, and a restore of the newest snapshot into an empty folder;
  * restic on the same tree, the same steps (installed with apt-get when missing).

    .venv/bin/python bench/backup_bench.py            # ~262 MB
    .venv/bin/python bench/backup_bench.py --mb 40    # a small tree, while the machine is busy
    .venv/bin/python bench/backup_bench.py --rounds 5 # more rounds (default 3; each contender alike, gzip once)

Goals: first backup >= 0.9x tar|zstd and >= restic's throughput; the second takes <= 5 % of the
first's time, stores <= 2 % new bytes and beats restic's second; the restore is at least as fast as restic's.
Every timing includes what a run pays: listing the tree, opening the repository (key derivation, or
the key cache a first run leaves outside backups/ on a repeat run), the lock. Beside the second backup's
ratio the bench prints the listing floor: a bare walk of the tree (os.scandir, one lstat per file) timed
just before it, the least any backup that looks for changed files pays, as a share of the first backup,
and the unskippable work alone (minimal_second_backup: that walk, the changed files encoded, three small
durable files), the least a second backup of this tree can take here. The two restores take turns going
first. Start it alone and at least ~6 minutes after anything deleted thousands of files (see
market_data_bench.py: this machine's ext4 skips recently freed inodes, and restores slow down 2x).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY = "bench-key-123456"


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


def settle() -> None:
    """Write back what earlier contenders left dirty, outside the timings: a contender that makes its own files
    durable (this project's syncfs before renames) must not pay for another's unwritten gigabytes."""
    os.sync()


def drop_cache_hint(root: Path) -> None:
    for p in root.rglob("*"):  # warm the page cache equally for every contender
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass


def set_aside(path: Path, round_: int) -> None:
    """A previous round's output moved out of the way, removed only when the bench ends: on ext4 without a journal
    a file created within minutes of a mass delete costs ~0.7 ms of CPU instead of ~25 us (see
    market_data_bench.py), so deleting the 3,700 restored files before the next round's restore slowed it ~2x."""
    if path.exists():
        aside = path.parent / "set-aside"
        aside.mkdir(exist_ok=True)
        path.rename(aside / f"{path.name}-{round_}")


CPU = {}  # contender -> CPU seconds (user + system, every thread and child): comparable on a busy machine


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def shell(cmd: str, cwd: Path, env: dict | None = None, label: str = "") -> float:
    settle()
    started, cpu = time.perf_counter(), children_cpu()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, check=True, env=env, stdout=subprocess.DEVNULL)
    CPU[label or cmd] = children_cpu() - cpu
    return time.perf_counter() - started


def ensure_restic() -> str | None:
    if not shutil.which("restic"):
        print("restic is missing: installing Debian's package with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "restic"], check=False, stdout=subprocess.DEVNULL)
    return shutil.which("restic")


def change_one_percent(data: Path) -> int:
    """Rewrite 1 % of the files (every 100th) with new bytes of the same size, as a day of new bars would."""
    files = sorted(data.rglob("*.parquet"))
    changed = files[::100]
    for path in changed:
        size = path.stat().st_size
        path.write_bytes(os.urandom(size))
    return len(changed)


def walk_stats(data: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (size, mtime_ns, inode) of every file: one os.scandir per folder and one lstat per file, nothing else."""
    stats, pending = {}, [str(data)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    st = entry.stat(follow_symlinks=False)
                    stats[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return stats


def listing_floor(data: Path) -> float:
    """Seconds of the least any backup that detects changes pays here: walk_stats alone (no plan, no parent, no
    repository); the median of 5 walks."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        walk_stats(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def minimal_second_backup(data: Path, before: dict[str, tuple[int, int, int]], out: Path) -> float:
    """Seconds of only the work a second backup cannot skip, with the parent's stats already in memory: the walk,
    each changed file read, hashed, compressed (zstd -3) and sealed (AES-256-GCM) on one thread, then one pack, a
    list of its chunks and a snapshot naming 400 folders, each written under a temporary name, fsynced, renamed and
    its folder fsynced. No repository is opened and no parent or index is read, so a real backup cannot be faster."""
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from trading_maintenance.core.common.atomic import atomic_write_bytes

    aead, compressor = AESGCM(AESGCM.generate_key(256)), zstandard.ZstdCompressor(level=3)
    out.mkdir(exist_ok=True)
    settle()
    started = time.perf_counter()
    sealed, ids = [], []
    for path, stat in walk_stats(data).items():
        if before.get(path) != stat:
            content = Path(path).read_bytes()
            ids.append(hashlib.sha256(content).hexdigest())
            sealed.append(aead.encrypt(os.urandom(12), compressor.compress(content), None))
    atomic_write_bytes(out / "pack", b"".join(sealed))
    atomic_write_bytes(out / "index", json.dumps(ids).encode())
    folders = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(400)]
    atomic_write_bytes(out / "snapshot", aead.encrypt(os.urandom(12), json.dumps({"files": ids, "folders": folders}).encode(), None))
    elapsed = time.perf_counter() - started
    for name in ("pack", "index", "snapshot"):
        (out / name).unlink()
    return elapsed


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def repository_backup(data: Path, backups: Path, work: Path) -> tuple[float, int]:
    from trading_maintenance.core.backups.repository import Repository
    from trading_maintenance.core.backups.run import collect_trading_files, create_backup

    settle()
    started = time.perf_counter()
    files, _, _ = collect_trading_files(data, ["parquet"], 0, datetime.now(timezone.utc))
    repo = Repository.open_or_create(backups, KEY)
    outcome = create_backup(dest_dir=backups, fmt="tar.zst", secret=KEY, parts=["trading_data"], config_path=None,
                            effective_settings={}, secret_keys=set(), data_dir=data, trading_files=files, work_root=work,
                            repository=repo)
    return time.perf_counter() - started, outcome.archive.size


def repository_restore(backups: Path, target: Path, work: Path) -> float:
    from trading_maintenance.core.backups.repository import Repository
    from trading_maintenance.core.backups.restore import restore_backup
    from trading_maintenance.core.backups.snapshots import select_snapshot

    settle()
    started = time.perf_counter()
    repo = Repository.open_or_create(backups, KEY, create=False)
    restore_backup(select_snapshot(repo).name, KEY, {"trading_data"}, stage_root=work, data_dir=target, repository=repo,
                   data_folders=("parquet",))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=250, help="size of the generated tree")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every contender (gzip: the first only)")
    args = parser.parse_args()

    from trading_maintenance.core.backups.run import collect_trading_files, create_backup

    work = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    # the repository's key cache (a repeat run skips scrypt, as in production) kept in the work folder
    os.environ["BACKUP_KEY_CACHE_DIR"] = str(work / "key-cache")
    try:
        data = work / "data"
        size = generate(data, args.mb)
        drop_cache_hint(data)
        mb = size / 1e6
        count = sum(1 for _ in data.rglob("*.parquet"))
        print(f"tree: {mb:.1f} MB in {count} parquet files; cores: {os.cpu_count()}; load: {os.getloadavg()[0]:.1f}; "
              f"rounds: {args.rounds}")
        timings: dict[str, list[float]] = {}  # contender -> seconds of each round
        cpus: dict[str, list[float]] = {}
        stored: dict[str, int] = {}  # contender -> bytes stored (the last round's)
        changed = 0

        def record(label: str, seconds: float, out: int | None = None) -> None:
            timings.setdefault(label, []).append(seconds)
            cpus.setdefault(label, []).append(CPU.get(label, 0.0))
            if out is not None:
                stored[label] = out

        restic = ensure_restic()
        first_label, restic_first_label = "project repository, first backup", "restic, first backup"
        for round_ in range(args.rounds):
            for name in ("repo", "restic", "restored", "restic-restored", "stage"):
                set_aside(work / name, round_)
            for name in ("peer.tar.zst", "peer.tar.gz"):
                (work / name).unlink(missing_ok=True)
            t = shell(f"tar -cf - parquet | zstd -3 -T0 -q -o {work}/peer.tar.zst", data, label="tar | zstd -3 -T0")
            record("tar | zstd -3 -T0", t, (work / "peer.tar.zst").stat().st_size)
            if round_ == 0:
                t = shell(f"tar -cf - parquet | gzip -6 > {work}/peer.tar.gz", data, label="tar | gzip -6")
                record("tar | gzip -6", t, (work / "peer.tar.gz").stat().st_size)
            for label, secret in [("project tar.zst archive", None), ("project tar.zst archive + AES-256-GCM", KEY)]:
                dest = work / "archive-out"
                settle()
                started, cpu = time.perf_counter(), time.process_time()
                files, _, _ = collect_trading_files(data, ["parquet"], 0, datetime.now(timezone.utc))
                outcome = create_backup(dest_dir=dest, fmt="tar.zst", secret=secret, parts=["trading_data"], config_path=None,
                                        effective_settings={}, secret_keys=set(), data_dir=data, trading_files=files)
                elapsed = time.perf_counter() - started
                CPU[label] = time.process_time() - cpu
                record(label, elapsed, outcome.archive.size)
                shutil.rmtree(dest)

            cpu = time.process_time()
            first, first_bytes = repository_backup(data, work / "repo", work)
            CPU[first_label] = time.process_time() - cpu
            record(first_label, first, first_bytes)
            env = {**os.environ, "RESTIC_PASSWORD": KEY, "RESTIC_REPOSITORY": str(work / "restic"), "RESTIC_CACHE_DIR": str(work / "restic-cache")}
            if restic:
                shell("restic init -q", data, env)
                restic_first = shell("restic backup -q parquet", data, env, label=restic_first_label)
                record(restic_first_label, restic_first, folder_bytes(work / "restic"))
            stats_before = walk_stats(data)
            changed = change_one_percent(data)
            drop_cache_hint(data)
            settle()
            timings.setdefault("listing floor", []).append(listing_floor(data))
            timings.setdefault("minimal second", []).append(minimal_second_backup(data, stats_before, work / "minimal"))
            cpu = time.process_time()
            second, second_bytes = repository_backup(data, work / "repo", work)
            CPU["project repository, second"] = time.process_time() - cpu
            record("project repository, second", second, second_bytes)
            timings.setdefault("second / first (same round)", []).append(second / first)
            if restic:
                before = folder_bytes(work / "restic")
                restic_second = shell("restic backup -q parquet", data, env, label="restic, second")
                record("restic, second", restic_second, folder_bytes(work / "restic") - before)

            # the two restores take turns going first: what the file system still owes for earlier work (write-back,
            # recently freed inodes) falls on both alike
            for contender in (("project", "restic") if round_ % 2 == 0 else ("restic", "project")):
                if contender == "project":
                    cpu = time.process_time()
                    restore = repository_restore(work / "repo", work / "restored", work / "stage")
                    CPU["project repository, restore"] = time.process_time() - cpu
                    record("project repository, restore", restore)
                elif restic:
                    record("restic, restore", shell(f"restic restore -q latest --target {work / 'restic-restored'}", data, env,
                                                    label="restic, restore"))

        def med(label: str) -> float:
            return statistics.median(timings[label])

        def spread(label: str) -> str:
            values = timings[label]
            return f"{statistics.median(values):7.3f} [{min(values):.3f}-{max(values):.3f}]"

        peer = med("tar | zstd -3 -T0")
        print(f"{'contender (seconds: median [min-max])':48} {'seconds':>22} {'MB/s':>8} {'stored MB':>10} {'vs tar|zstd':>12} {'CPU s':>7}")
        for label in timings:
            if label.startswith("second / first") or label in ("listing floor", "minimal second"):
                continue
            out = stored.get(label)
            shown = f"{label} ({changed} files changed)" if ", second" in label else label
            print(f"{shown:48} {spread(label):>22} {mb / med(label):8.1f} {'' if out is None else f'{out / 1e6:10.1f}':>10} "
                  f"{peer / med(label):11.2f}x {statistics.median(cpus[label]):7.2f}")
        first, second = med(first_label), med("project repository, second")
        ratios = [100 * r for r in timings["second / first (same round)"]]
        print("goals (ratios of the medians):")
        print(f"  first backup vs tar|zstd throughput   {peer / first:6.2f}x  (goal >= 0.9x; "
              f"CPU {statistics.median(cpus['tar | zstd -3 -T0']) / statistics.median(cpus[first_label]):.2f}x)")
        print(f"  second backup time / first            {100 * second / first:6.1f} %  (goal <= 5 %; each round's own: "
              f"{statistics.median(ratios):.1f} % [{min(ratios):.1f}-{max(ratios):.1f}])")
        floor = med("listing floor")
        print(f"    floor: listing the tree alone       {100 * floor / first:6.1f} %  ({1000 * floor:.1f} ms [{1000 * min(timings['listing floor']):.1f}-"
              f"{1000 * max(timings['listing floor']):.1f}] for os.scandir + one lstat per file, nothing else: the floor "
              f"under any backup that looks for changes; the 5 % budget is {50 * first:.1f} ms)")
        least = med("minimal second")
        print(f"    floor: the unskippable work alone   {100 * least / first:6.1f} %  ({1000 * least:.1f} ms [{1000 * min(timings['minimal second']):.1f}-"
              f"{1000 * max(timings['minimal second']):.1f}]: the walk, the changed files encoded, three small durable files; "
              f"no repository, parent or index read)")
        print(f"  second backup new bytes / first       {100 * stored['project repository, second'] / stored[first_label]:6.2f} %  (goal <= 2 %)")
        if restic:
            print(f"  first backup vs restic throughput     {med(restic_first_label) / first:6.2f}x  (goal >= 1x)")
            print(f"  second backup vs restic's second      {med('restic, second') / second:6.2f}x faster  (goal > 1x)")
            print(f"  restore vs restic's restore           {med('restic, restore') / med('project repository, restore'):6.2f}x faster  (goal >= 1x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
