"""Entries of the dated layout that are not daily files, and writers' temporary files: readers skip
them with a warning, consolidation quarantines the misnamed with a reason, temporary files are
never data, and a crashed writer's temporary names are removed by the next run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner

from trading_maintenance.cli_ext.market_data import register
from trading_maintenance.core.market_data.consolidate import consolidate_month
from trading_maintenance.core.market_data.io import write_json_atomic
from trading_maintenance.core.market_data.layout import archive_dir_for, archive_path, manifest_path, quarantine_dir_for
from trading_maintenance.core.market_data.retention import archived_daily_files, expired_archived_daily_files
from trading_maintenance.market_data import read_bars
from trading_maintenance_tests.market_data.synth import daily_path, session_bars, write_daily

FEB = "2026-02"
GOOD_DAY = date(2026, 2, 2)
OTHER_DAY = date(2026, 2, 3)  # bars that must never be read through a misnamed entry
AS_OF = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _misnamed(folder: Path, kind: str, outside: Path) -> Path:
    """One entry of the folder that is not a daily file; its content (when readable) holds OTHER_DAY's bars."""
    bars = session_bars("AAA", OTHER_DAY)
    if kind == "directory":
        path = folder / "2026-02-04.parquet"
        path.mkdir()
        bars.write_parquet(path / "part-0.parquet")
        return path
    if kind == "symlink":
        path = folder / "2026-02-05.parquet"
        bars.write_parquet(outside)
        path.symlink_to(outside)
        return path
    path = folder / kind
    bars.write_parquet(path)
    return path


MISNAMED = [
    "2026-02-30.parquet",
    "2026-02-29.parquet",  # 2026 is no leap year
    "2026-13-01.parquet",
    "0000-01-01.parquet",
    "2026-2-5.parquet",
    "2026-02-06.parquet.bak",
    "2026-02-06.v2.parquet",
    "directory",
    "symlink",
]


@pytest.fixture
def folder(mdir) -> Path:
    write_daily(mdir, session_bars("AAA", GOOD_DAY), "AAA", "1min", GOOD_DAY)
    return daily_path(mdir, "AAA", "1min", GOOD_DAY).parent


@pytest.mark.parametrize("kind", MISNAMED)
def test_read_bars_skips_what_is_not_a_daily_file_with_a_warning(mdir, folder, kind, tmp_path):
    entry = _misnamed(folder, kind, tmp_path / "elsewhere.parquet")
    with pytest.warns(UserWarning, match="not daily files") as caught:
        bars = read_bars("AAA", "1min", "2026-02-01", "2026-03-01", market_data_dir=mdir)
    assert entry.name in str(caught[0].message)
    assert bars.height == 390 and bars.equals(session_bars("AAA", GOOD_DAY))
    assert os.path.lexists(entry)  # readers never change anything


@pytest.mark.parametrize("kind", MISNAMED)
def test_consolidation_quarantines_what_is_not_a_daily_file_with_a_reason(mdir, folder, kind, tmp_path):
    outside = tmp_path / "elsewhere.parquet"
    entry = _misnamed(folder, kind, outside)
    dry = consolidate_month(mdir, FEB, as_of=AS_OF, dry_run=True)
    assert [m["path"] for m in dry.misnamed] == [str(entry)] and os.path.lexists(entry)

    result = consolidate_month(mdir, FEB, as_of=AS_OF)
    assert not result.failed and result.summary()["files_misnamed"] == 1
    [report] = result.misnamed
    moved = Path(report["moved_to"])
    assert not os.path.lexists(entry) and os.path.lexists(moved)
    assert quarantine_dir_for(mdir) in moved.parents
    reason = Path(str(moved) + ".reason.txt").read_text()
    assert report["reason"] in reason and report["reason"]
    if kind == "symlink":
        assert moved.is_symlink() and outside.exists()  # the link moved, its target untouched
    archive = pl.read_parquet(archive_path(archive_dir_for(mdir), "AAA", "1min", FEB))
    assert archive.equals(session_bars("AAA", GOOD_DAY))


def test_misnamed_entries_of_another_month_are_left_to_that_month(mdir, folder):
    march = folder / "2026-03-31.parquet.bak"
    march.write_bytes(b"x")
    result = consolidate_month(mdir, FEB, as_of=AS_OF)
    assert result.misnamed == [] and march.exists()
    result = consolidate_month(mdir, "2026-03", as_of=AS_OF)
    assert [m["path"] for m in result.misnamed] == [str(march)] and not march.exists()


def test_a_manifest_naming_an_impossible_or_foreign_file_is_never_trusted(mdir, folder):
    consolidate_month(mdir, FEB, as_of=AS_OF)
    archive = archive_path(archive_dir_for(mdir), "AAA", "1min", FEB)
    manifest = manifest_path(archive)
    data = json.loads(manifest.read_text())
    good = daily_path(mdir, "AAA", "1min", GOOD_DAY)
    size, mtime_ns = good.stat().st_size, good.stat().st_mtime_ns
    sibling = daily_path(mdir, "AAA", "5min", GOOD_DAY)
    sibling.parent.mkdir(parents=True)
    sibling.write_bytes(good.read_bytes())
    os.utime(sibling, ns=(mtime_ns, mtime_ns))
    data["sources"] += [
        {"name": "2026-02-30.parquet", "size": size, "mtime_ns": mtime_ns},
        {"name": "../5min/2026-02-02.parquet", "size": size, "mtime_ns": mtime_ns},
    ]
    (folder / "2026-02-30.parquet").write_bytes(good.read_bytes())
    os.utime(folder / "2026-02-30.parquet", ns=(mtime_ns, mtime_ns))
    manifest.write_text(json.dumps(data))
    assert archived_daily_files(mdir, verify=False) == {good}
    assert expired_archived_daily_files(mdir, None, 1, date(2027, 1, 1), verify=False) == [good]


def test_temporary_files_are_never_data(mdir, folder):
    hidden = folder / f".2026-02-03.parquet.{os.getpid()}.tmp"
    suffixed = folder / "2026-02-03.parquet.tmp"
    partial = folder / "2026-02-04.parquet.partial"
    for path in (hidden, suffixed, partial):
        session_bars("AAA", OTHER_DAY).write_parquet(path)
    bars = read_bars("AAA", "1min", "2026-02-01", "2026-03-01", market_data_dir=mdir)
    assert bars.equals(session_bars("AAA", GOOD_DAY))
    result = consolidate_month(mdir, FEB, as_of=AS_OF)
    assert result.total("files_read") == 1 and result.misnamed == [] and result.quarantined == []
    assert all(p.exists() for p in (hidden, suffixed, partial))  # a live writer's files are left alone
    assert archived_daily_files(mdir) == {daily_path(mdir, "AAA", "1min", GOOD_DAY)}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_crashed_writers_temporary_names_are_removed_by_the_next_run(mdir, folder):
    consolidate_month(mdir, FEB, as_of=AS_OF)
    adir = archive_dir_for(mdir)
    archive = archive_path(adir, "AAA", "1min", FEB)
    dead = _dead_pid()
    crashed_manifest = archive.with_name(f".{FEB}.manifest.json.{dead}.tmp")
    crashed_archive = archive.with_name(f".{FEB}.parquet.{dead}.tmp")
    # a folder whose symbol has no daily file left this month: its group is not consolidated again
    gone = archive_path(adir, "BBB", "1min", FEB).with_name(f".{FEB}.manifest.json.{dead}.tmp")
    gone.parent.mkdir(parents=True)
    other_month = archive.with_name(f".2026-03.manifest.json.{dead}.tmp")
    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = archive.with_name(f".{FEB}.manifest.json.{live_writer.pid}.tmp")
        for path in (crashed_manifest, crashed_archive, gone, other_month, live):
            path.write_text("{half a manif")

        dry = consolidate_month(mdir, FEB, as_of=AS_OF, dry_run=True)
        assert sorted(dry.stale_temporaries) == sorted(map(str, (crashed_manifest, crashed_archive, gone)))
        assert crashed_manifest.exists() and gone.exists()

        result = consolidate_month(mdir, FEB, as_of=AS_OF)
        assert result.summary()["stale_temporaries_removed"] == 3
        assert not crashed_manifest.exists() and not crashed_archive.exists() and not gone.exists()
        assert live.exists() and other_month.exists()  # a live writer's, and another month's run's
    finally:
        live_writer.kill()
        live_writer.wait()
    assert archived_daily_files(mdir) == {daily_path(mdir, "AAA", "1min", GOOD_DAY)}


def test_writing_a_manifest_removes_a_crashed_writers_temporary_of_it(tmp_path):
    target = tmp_path / "2026-02.manifest.json"
    crashed = tmp_path / f".{target.name}.{_dead_pid()}.tmp"
    crashed.write_text("{")
    write_json_atomic({"a": 1}, target)
    assert not crashed.exists() and json.loads(target.read_text()) == {"a": 1}


def test_bars_command_with_an_impossible_date_file_warns_and_answers(mdir, folder, config_path, monkeypatch):
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(config_path))
    (folder / "2026-02-30.parquet").write_bytes(b"whatever")

    @click.group()
    def cli() -> None:
        pass

    register(cli)
    runner = CliRunner()
    result = runner.invoke(cli, ["market-data", "bars", "AAA", "1min", "2026-02-01", "2026-03-01", "--limit", "0"])
    assert result.exit_code == 0, result.output
    assert "390 bars" in result.output and "2026-02-30.parquet: 2026-02-30 is not a real date" in result.output
    result = runner.invoke(cli, ["market-data", "bars", "../AAA", "1min", "2026-02-01", "2026-03-01"])
    assert result.exit_code == 2 and "symbol" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["market-data", "bars", "AAA", "1min", "2026-02-30", "2026-03-01"])
    assert result.exit_code == 2 and "start" in result.output and "Traceback" not in result.output
