"""Log rotation by rename with writers appending concurrently; per-log counts; gzip rules; the job."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from trading_maintenance.core.hygiene import log_rotation as lr
from trading_maintenance.core.hygiene.open_files import open_file_ids
from trading_maintenance.defs.hygiene.log_rotation import log_rotation_job
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.hygiene.conftest import make_file

DAY = 86400
LINES = 15000

REOPENING_WRITER = """
import logging, logging.handlers, sys, time
path, n = sys.argv[1], int(sys.argv[2])
handler = logging.handlers.WatchedFileHandler(path)
handler.setFormatter(logging.Formatter("%(message)s"))
log = logging.getLogger("w"); log.addHandler(handler); log.setLevel(logging.INFO); log.propagate = False
for i in range(n):
    log.info("R %08d %s", i, "r" * 60)
    if i % 150 == 0:
        time.sleep(0.003)
"""

PLAIN_WRITER = """
import sys, time
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "a", buffering=1) as out:   # opened once, never reopened
    for i in range(n):
        out.write("N %08d %s\\n" % (i, "n" * 60))
        if i % 150 == 0:
            time.sleep(0.003)
"""


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _all_lines(folder: Path) -> list[str]:
    lines: list[str] = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        lines.extend(data.decode().splitlines())
    return lines


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    log = logs / "trading_system.log"
    log.touch()
    writers = [
        subprocess.Popen([sys.executable, "-c", REOPENING_WRITER, str(log), str(LINES)]),
        subprocess.Popen([sys.executable, "-c", PLAIN_WRITER, str(log), str(LINES)]),
    ]
    rotations = 0
    try:
        while any(w.poll() is None for w in writers):
            held = open_file_ids()
            # compress_after=0: every rotated file but the newest is a gzip candidate, so the
            # test also proves a file a writer still holds is never compressed
            plan = lr.plan_rotation(logs, 40_000, 200, time.time(), 0, held)
            outcome = lr.apply_rotation(plan, held)
            assert outcome.ok, outcome.failed
            assert lr.verify_rotation(plan, outcome) == []
            rotations += outcome.count("create")
            time.sleep(0.02)
    finally:
        for w in writers:
            w.wait(timeout=60)
    assert all(w.returncode == 0 for w in writers)
    assert rotations >= 2, "writers finished before rotation could interleave"

    # rotate once more with the writers gone, then a rerun changes nothing
    plan = lr.plan_rotation(logs, 40_000, 200, time.time(), None, open_file_ids())
    lr.apply_rotation(plan, set())
    before = _snapshot(logs)
    again = lr.plan_rotation(logs, 40_000, 200, time.time(), None, open_file_ids())
    assert again.ops == []
    lr.apply_rotation(again, set())
    assert _snapshot(logs) == before

    lines = _all_lines(logs)
    counts = Counter(lines)
    expected = {f"R {i:08d} {'r' * 60}" for i in range(LINES)} | {f"N {i:08d} {'n' * 60}" for i in range(LINES)}
    assert set(counts) == expected  # no partial or foreign line
    assert max(counts.values()) == 1 and len(lines) == 2 * LINES
    assert any(name.endswith(".gz") for name in os.listdir(logs))


def _chain(logs: Path, name: str, count: int, mtime: float) -> None:
    for i in range(1, count + 1):
        make_file(logs / f"{name}.{i}", f"{name} rotated {i}\n" * 50, mtime - i)


def test_keeps_count_per_log_and_never_gzips_newest(tmp_path):
    logs = tmp_path / "logs"
    now = time.time()
    for name in ("a.log", "b.log"):
        make_file(logs / name, "x" * 5000, now)
        os.chmod(logs / name, 0o640)
        _chain(logs, name, 5, now - 10 * DAY)
    make_file(logs / "small.log", "y" * 10, now)
    make_file(logs / "small.log.1", "old\n" * 100, now - 30 * DAY)
    plan = lr.plan_rotation(logs, 1000, 5, now, 7 * DAY, set())
    assert plan.rotated_logs == ["a.log", "b.log"]
    outcome = lr.apply_rotation(plan, set())
    assert outcome.ok and lr.verify_rotation(plan, outcome) == []
    for name in ("a.log", "b.log"):
        assert (logs / name).exists() and (logs / name).stat().st_size == 0
        assert (logs / name).stat().st_mode & 0o777 == 0o640
        assert (logs / f"{name}.1").read_text() == "x" * 5000  # newest rotated: plain
        for i in range(2, 6):
            assert (logs / f"{name}.{i}.gz").exists(), i  # old rotated: gzipped
            assert gzip.decompress((logs / f"{name}.{i}.gz").read_bytes()).decode() == f"{name} rotated {i - 1}\n" * 50
        assert not (logs / f"{name}.6").exists() and not (logs / f"{name}.6.gz").exists()
    assert outcome.count("delete") == 2  # one per log, not across logs
    assert (logs / "small.log.1").exists()  # the newest rotated file is never gzipped, however old
    assert lr.plan_rotation(logs, 1000, 5, now, 7 * DAY, set()).ops == []


def test_file_held_open_beyond_count_is_kept(tmp_path):
    logs = tmp_path / "logs"
    now = time.time()
    make_file(logs / "c.log", "z" * 2000, now)
    _chain(logs, "c.log", 2, now)
    with open(logs / "c.log.2", "ab"):
        held = open_file_ids()
        plan = lr.plan_rotation(logs, 1000, 2, now, None, held)
        outcome = lr.apply_rotation(plan, held)
    assert outcome.ok
    assert (logs / "c.log.3").exists()  # beyond the count but a process holds it
    assert any("held open" in n.reason for n in plan.notes)


def test_symlinked_log_never_rotated(tmp_path):
    logs = tmp_path / "logs"
    outside = make_file(tmp_path / "elsewhere" / "big.log", "q" * 5000)
    logs.mkdir()
    os.symlink(outside, logs / "linked.log")
    plan = lr.plan_rotation(logs, 1000, 5, time.time(), None, set())
    assert plan.ops == [] and plan.notes[0].reason.startswith("symlink")
    assert outside.read_text() == "q" * 5000


def test_log_rotation_job_dry_run_then_real_then_noop(tmp_path, data_dir, run_job):
    config = write_config(tmp_path, data_dir, maintenance={"performance": {"max_file_size_mb": 1}})
    logs = data_dir / "logs"
    now = time.time()
    make_file(logs / "scheduler.log", b"s" * (1024 * 1024 + 10), now)
    _chain(logs, "scheduler.log", 5, now - 9 * DAY)
    make_file(logs / "error.log", b"e" * 100, now)
    before = _snapshot(logs)

    dry = run_job(log_rotation_job, config=config, run_config={"ops": {"rotate_logs": {"config": {"dry_run": True}}}})
    assert dry.success
    assert _snapshot(logs) == before  # a dry run changes nothing
    out = dry.output_for_node("rotate_logs")
    assert out["planned_rotations"] == 1 and out["planned_deletions"] == 1 and out["planned_compressions"] == 4
    assert out["logs_rotated"] == 0

    real = run_job(log_rotation_job, config=config)
    assert real.success
    out = real.output_for_node("rotate_logs")
    assert (out["logs_rotated"], out["files_deleted"], out["files_compressed"]) == (1, 1, 4)
    assert (logs / "scheduler.log.1").stat().st_size == 1024 * 1024 + 10
    state_file = data_dir / "state" / "log_rotation.json"
    state = json.loads(state_file.read_text())
    assert state["logs"]["scheduler.log"]["rotations"] == 1
    after, state_mtime = _snapshot(logs), state_file.stat().st_mtime_ns

    rerun = run_job(log_rotation_job, config=config)
    assert rerun.success
    assert rerun.output_for_node("rotate_logs")["logs_rotated"] == 0
    assert _snapshot(logs) == after and state_file.stat().st_mtime_ns == state_mtime


def test_plain_and_gz_twins_shift_together(tmp_path):
    logs = tmp_path / "logs"
    now = time.time()
    make_file(logs / "d.log", "d" * 3000, now)
    make_file(logs / "d.log.1", "one\n", now - 10 * DAY)
    make_file(logs / "d.log.2", "two\n", now - 10 * DAY)
    make_file(logs / "d.log.2.gz", gzip.compress(b"two-old\n"), now - 11 * DAY)  # left by a crash
    plan = lr.plan_rotation(logs, 1000, 5, now, None, set())
    outcome = lr.apply_rotation(plan, set())
    assert outcome.ok and lr.verify_rotation(plan, outcome) == []
    assert sorted(os.listdir(logs)) == ["d.log", "d.log.1", "d.log.2", "d.log.3", "d.log.3.gz"]
    assert (logs / "d.log.1").read_text() == "d" * 3000 and (logs / "d.log.3").read_text() == "two\n"


def _make_odd(kind: str, path: Path, tmp_path: Path) -> None:
    if kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("keep me")
    elif kind == "symlink":
        os.symlink(make_file(tmp_path / "elsewhere" / "target.log", "t" * 10), path)
    else:
        os.mkfifo(path)


@pytest.mark.parametrize("kind", ["folder", "symlink", "fifo"])
@pytest.mark.parametrize("odd_name", ["svc.log.2", "svc.log.1", "svc.log.5.gz"])
def test_non_regular_entry_in_the_chain_is_reported_before_anything_is_renamed(tmp_path, kind, odd_name):
    logs = tmp_path / "logs"
    now = time.time()
    make_file(logs / "svc.log", "s" * 3000, now)
    for i in (1, 3):
        make_file(logs / f"svc.log.{i}", f"rotated {i}\n", now - i * DAY)
    if (logs / odd_name).exists():
        (logs / odd_name).unlink()
    _make_odd(kind, logs / odd_name, tmp_path)
    make_file(logs / "other.log", "o" * 3000, now)
    before = sorted(os.listdir(logs))

    plan = lr.plan_rotation(logs, 1000, 5, now, None, set())
    assert [op.log for op in plan.blocked] == ["svc.log"] and odd_name in plan.blocked[0].reason
    assert any(n.path == str(logs / odd_name) and "left alone" in n.reason for n in plan.notes)
    assert all(op.log != "svc.log" for op in plan.ops) and plan.rotated_logs == ["other.log"]
    outcome = lr.apply_rotation(plan, set())
    assert outcome.ok and lr.verify_rotation(plan, outcome) == []
    after = sorted(os.listdir(logs))
    assert [n for n in after if n.startswith("svc")] == [n for n in before if n.startswith("svc")]
    assert (logs / "svc.log").read_text() == "s" * 3000 and (logs / "other.log.1").exists()


def test_log_rotation_job_fails_when_a_due_log_is_blocked_and_lists_it_first(tmp_path, data_dir, run_job):
    config = write_config(tmp_path, data_dir, maintenance={"performance": {"max_file_size_mb": 1}})
    logs = data_dir / "logs"
    make_file(logs / "svc.log", b"s" * (1024 * 1024 + 10))
    (logs / "svc.log.2").mkdir()
    result = run_job(log_rotation_job, config=config)
    assert not result.success
    assert (logs / "svc.log").stat().st_size == 1024 * 1024 + 10 and (logs / "svc.log.2").is_dir()
    assert not (logs / "svc.log.1").exists() and not (logs / "svc.log.3").exists()


def test_temporary_names_are_never_rotated_or_compressed_and_dead_gzip_temporaries_go(tmp_path):
    logs = tmp_path / "logs"
    now = time.time()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    work = make_file(logs / ".svc-work-1.log", "w" * 3000, now)
    partial = make_file(logs / "svc.log.3.partial", "p" * 3000, now - 30 * DAY)
    leftover = make_file(logs / f".svc.log.2.gz.{dead.pid}.tmp", b"half a gzip", now - 30 * DAY)
    make_file(logs / "svc.log", "s" * 10, now)
    make_file(logs / "svc.log.2", "two\n" * 100, now - 30 * DAY)
    plan = lr.plan_rotation(logs, 1000, 5, now, 7 * DAY, set())
    assert [(op.action, op.path) for op in plan.ops] == [("remove_temp", str(leftover)), ("compress", str(logs / "svc.log.2"))]
    outcome = lr.apply_rotation(plan, set())
    assert outcome.ok and lr.verify_rotation(plan, outcome) == []
    assert work.read_text() == "w" * 3000 and partial.exists() and not leftover.exists()
    assert sorted(os.listdir(logs)) == sorted([".svc-work-1.log", "svc.log.3.partial", "svc.log", "svc.log.2.gz"])
