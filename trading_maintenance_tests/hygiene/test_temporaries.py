"""Temporaries of atomic writes: named with process id and host, recognised as temporary by every
task, removed by the next write once their process is gone, never while it runs or from another host."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from trading_maintenance.core.common import atomic
from trading_maintenance.core.common.atomic import (
    TemporaryName,
    atomic_write_text,
    dead_temporary_reason,
    host_label,
    parse_temporary_name,
    remove_dead_temporaries,
    temporary_name_for,
)
from trading_maintenance.core.hygiene.file_names import is_temporary_name


def _crash_while_writing(target: Path) -> None:
    """A process that dies between writing its temporary and renaming it."""
    script = textwrap.dedent(
        f"""
        import os
        from trading_maintenance.core.common import atomic
        atomic.os.replace = lambda *a: os._exit(3)
        atomic.atomic_write_text({str(target)!r}, "half of a report")
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == 3, child.stderr


def test_a_crashed_writers_temporary_is_removed_by_the_next_write_and_never_read_as_data(tmp_path):
    report = tmp_path / "reports" / "maintenance_report_2026-10-01.md"
    _crash_while_writing(report)
    leftovers = list(report.parent.iterdir())
    assert len(leftovers) == 1 and not report.exists()
    writer = parse_temporary_name(leftovers[0].name)
    assert writer is not None and writer.target == report.name and writer.host == host_label() and writer.pid != os.getpid()
    assert is_temporary_name(leftovers[0].name)  # every other task skips it

    atomic_write_text(report.with_name("maintenance_report_2026-10-02.md"), "next day")  # the task's next run
    assert sorted(p.name for p in report.parent.iterdir()) == ["maintenance_report_2026-10-02.md"]


def test_live_foreign_and_unrelated_temporaries_stay(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f".a.json.{os.getpid()}@{host_label()}.0123abcd.tmp"
    foreign = tmp_path / f".b.json.{dead.pid}@elsewhere-{host_label()}.0123abcd.tmp"
    unrelated = tmp_path / ".c.json.tmp"  # no process id: its writer is unknown
    crashed = tmp_path / f".d.json.{dead.pid}@{host_label()}.0123abcd.tmp"
    other_pattern = tmp_path / f".e.csv.{dead.pid}@{host_label()}.0123abcd.tmp"
    for path in (live, foreign, unrelated, crashed, other_pattern):
        path.write_text("partial")
    link = tmp_path / f".f.json.{dead.pid}@{host_label()}.0123abcd.tmp"
    link.symlink_to(tmp_path / "elsewhere")

    dry = remove_dead_temporaries(tmp_path, "*.json", dry_run=True)
    assert [p for p, _ in dry.removed] == [crashed] and crashed.exists()
    sweep = remove_dead_temporaries(tmp_path, "*.json")
    assert [p for p, _ in sweep.removed] == [crashed] and "which is gone" in sweep.removed[0][1]
    assert not crashed.exists()
    assert all(p.exists() for p in (live, foreign, unrelated, other_pattern)) and link.is_symlink()

    # a live process whose id was reused after the temporary was written is not its writer
    monkeypatch.setattr(atomic, "_process_start_time", lambda pid: time.time() + 60)
    assert "newer process" in dead_temporary_reason(live)


def test_temporary_names_round_trip_and_reject_lookalikes(tmp_path):
    target = tmp_path / "tradenote_2026-10-01.csv"
    name = temporary_name_for(target).name
    assert name.startswith(".tradenote_2026-10-01.csv.") and name.endswith(".tmp")
    assert parse_temporary_name(name) == TemporaryName("tradenote_2026-10-01.csv", os.getpid(), host_label())
    assert temporary_name_for(target) != temporary_name_for(target)
    for lookalike in ("tradenote.csv", ".x.csv.tmp", ".x.csv.12.tmp", ".x.csv.12@host.tmp", ".x.csv.abc@host.0123abcd.tmp", "x.csv.12@h.0123abcd.tmp"):
        assert parse_temporary_name(lookalike) is None, lookalike


def test_failed_write_leaves_no_temporary_and_the_old_file_intact(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    def failing(handle):
        handle.write(b"half")
        raise Boom()

    try:
        atomic._atomic(target, failing, None)
    except Boom:
        pass
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_every_temporary_name_this_project_writes_is_recognised_by_hygiene(tmp_path):
    names = [
        temporary_name_for(tmp_path / "report.md").name,  # atomic writes, gzip, database purge archives
        ".backup-20261001T020000Z-ab12.tar.zst.enc.partial",  # backup archive in progress
        ".backup-work-1234/redis.rdb",  # backup work folder
        ".archive-2026-10.parquet.download",  # object store download in progress
        ".x.log.2.gz.1234.tmp",  # gzip temporary of an earlier version
    ]
    assert [name for name in names if not is_temporary_name(name)] == []
    assert not is_temporary_name("tradenote_2026-10-01.csv") and not is_temporary_name("download_report.csv")
