"""Retention planning and applying (core/hygiene/cleanup.py) on real files: boundaries, dry run, symlinks,
duplicates, compression, market-data archive coverage, verification."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from trading_maintenance.core.common.atomic import TemporaryName, host_label, parse_temporary_name
from trading_maintenance.core.hygiene import cleanup as c
from trading_maintenance.core.hygiene import compression, file_names, open_files
from trading_maintenance.settings import load_settings
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.hygiene.conftest import make_file

TZ = "America/New_York"
DAY = 86400
NOW = 1_780_000_000.0  # fixed clock: boundaries are exact


def _settings(tmp_path, data_dir, **sections):
    return load_settings(write_config(tmp_path, data_dir, **sections))


def _cat(cats, name):
    return next(x for x in cats if x.name == name)


@pytest.mark.parametrize(
    "category,folder,retention_key,retention",
    [
        ("logs", "logs", "log_files", 30),
        ("temp", "temp", "temp_files", 1),
        ("backups", "backups", "backup_files", 7),
    ],
)
def test_mtime_cutoff_exact_boundary_and_one_second_either_side(tmp_path, data_dir, category, folder, retention_key, retention):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), category)
    assert cat.retention_days == retention
    cutoff = NOW - retention * DAY
    at = make_file(data_dir / folder / "at_cutoff.log.2", b"a" * 10, cutoff)
    older = make_file(data_dir / folder / "one_second_older.log.3", b"b" * 20, cutoff - 1)
    younger = make_file(data_dir / folder / "one_second_younger.log.4", b"c" * 30, cutoff + 1)

    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert [e.path for e in plan.delete] == [str(older)]
    assert sorted(e.path for e in plan.keep) == sorted([str(at), str(younger)])

    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok, (outcome.failed, outcome.problems)
    assert len(outcome.deleted) == 1 and outcome.bytes_freed == 20
    assert not older.exists() and at.exists() and younger.exists()


@pytest.mark.parametrize(
    "category,folder,name,retention",
    [
        ("exports", "exports/tradenote", "tradenote_2026-01-15.csv", 90),
        ("exports", "exports/tradenote", "tradenote_2026-01-15_metrics.json.gz", 90),
        ("reports", "reports/maintenance", "maintenance_report_2026-01-15.md", 90),
        ("reports", "reports/reconciliation", "reconciliation_20260115T233000Z.json", 90),
    ],
)
def test_name_date_cutoff_exact_boundary_and_one_second_either_side(tmp_path, data_dir, category, folder, name, retention):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), category)
    day = date(2026, 1, 15)
    # mtime is recent: the date in the name of a layout this project writes decides
    f = make_file(data_dir / folder / name, "Account,T/D\n", NOW)
    undated = make_file(data_dir / folder / "notes.txt", "x", NOW - (retention - 1) * DAY)
    boundary = file_names.day_start(day, TZ) + retention * DAY
    for now, expired in ((boundary, False), (boundary - 1, False), (boundary + 1, True)):
        plan = c.plan_category(cat, data_dir, now, TZ, None)
        assert [e.path for e in plan.delete] == ([str(f)] if expired else []), now - boundary
        assert str(undated) in {e.path for e in plan.keep}
    plan = c.plan_category(cat, data_dir, boundary + 1, TZ, None)
    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, boundary + 1, TZ, None)
    assert outcome.ok and len(outcome.deleted) == 1
    assert not f.exists() and undated.exists()


def test_date_from_name_variants():
    assert file_names.date_from_name("2026-03-02.parquet") == date(2026, 3, 2)
    assert file_names.date_from_name("export_20260302.csv") == date(2026, 3, 2)
    assert file_names.date_from_name("trading_system.log.3") is None
    assert file_names.date_from_name("order_12345678901.csv") is None  # digits that are no date
    assert file_names.date_from_name("2026-13-40.csv") is None


def test_market_data_deleted_only_when_archived(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "market_data")
    base = data_dir / "parquet" / "market_data" / "AAPL" / "1min"
    archived_old = make_file(base / "2025-01-02.parquet", b"p" * 50, NOW)
    unarchived_old = make_file(base / "2025-01-03.parquet", b"p" * 60, NOW)
    young = make_file(base / "2026-05-20.parquet", b"p" * 70, NOW)
    now = file_names.day_start(date(2026, 5, 21), TZ)
    archived = {os.path.realpath(archived_old), os.path.realpath(young)}

    plan = c.plan_category(cat, data_dir, now, TZ, None, archived)
    assert [e.path for e in plan.delete] == [str(archived_old)]
    assert [(h.path, h.reason) for h in plan.held] == [(str(unarchived_old), "not archived, kept")]
    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, now, TZ, archived)
    assert outcome.ok and not archived_old.exists() and unarchived_old.exists() and young.exists()

    # without any archive information nothing is deleted at all
    plan = c.plan_category(cat, data_dir, now, TZ, None, None)
    assert plan.delete == [] and [h.path for h in plan.held] == [str(unarchived_old)]


def test_dry_run_plan_deletes_nothing(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    old = make_file(data_dir / "temp" / "old.tmp", mtime=NOW - 5 * DAY)
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, NOW, TZ, 7)
    assert sum(len(p.delete) for p in plans) == 1
    assert old.exists()  # planning alone never touches anything


def test_symlink_out_of_root_not_followed(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    outside = tmp_path / "outside"
    victim = make_file(outside / "precious.txt", mtime=NOW - 400 * DAY)
    (data_dir / "temp").mkdir()
    os.symlink(outside, data_dir / "temp" / "link_dir")
    os.symlink(victim, data_dir / "temp" / "link_file")
    os.utime(data_dir / "temp" / "link_file", (NOW - 400 * DAY, NOW - 400 * DAY), follow_symlinks=False)
    # a category folder that is itself a symlink out of the root is skipped entirely
    os.symlink(outside, data_dir / "backups")
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, NOW, TZ, 7)
    for plan in plans:
        outcome = c.apply_category(plan)
        assert outcome.ok
    assert victim.exists()
    assert os.path.islink(data_dir / "temp" / "link_dir") and os.path.islink(data_dir / "temp" / "link_file")
    backups = next(p for p in plans if p.name == "backups")
    assert backups.skipped and "symlink" in backups.skipped[0][1]
    temp = next(p for p in plans if p.name == "temp")
    assert {os.path.basename(p) for p, _ in temp.skipped} == {"link_dir", "link_file"}


SAME = "same content\n" * 400  # above the minimum size
SAME_LENGTH = "same length!\n" * 400


def test_identical_duplicates_reduced_to_one(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "exports")
    first = make_file(data_dir / "exports" / "tradenote" / "a.csv", SAME, NOW - 3 * DAY)
    second = make_file(data_dir / "exports" / "tradenote" / "b.csv", SAME, NOW - 2 * DAY)
    third = make_file(data_dir / "exports" / "maintenance" / "c.csv", SAME, NOW - 1 * DAY)
    other = make_file(data_dir / "exports" / "maintenance" / "d.csv", SAME_LENGTH, NOW - 1 * DAY)
    assert len(SAME) == len(SAME_LENGTH)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert sorted(d.path for d in plan.duplicates) == sorted([str(second), str(third)])
    assert {d.original for d in plan.duplicates} == {str(first)}
    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok and len(outcome.deduplicated) == 2
    assert first.exists() and other.exists() and not second.exists() and not third.exists()


def test_duplicate_changed_after_planning_is_kept(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "backups")
    a = make_file(data_dir / "backups" / "a.bin", b"1234" * 2000, NOW - 100)
    b = make_file(data_dir / "backups" / "b.bin", b"1234" * 2000, NOW - 50)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert len(plan.duplicates) == 1
    b.write_bytes(b"5678" * 2000)
    outcome = c.apply_category(plan)
    assert a.exists() and b.exists() and outcome.failed


def test_old_kept_files_compressed_with_age_preserved(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "logs")
    old_rotated = make_file(data_dir / "logs" / "app.log.2", "line\n" * 1000, NOW - 10 * DAY)
    newest_rotated = make_file(data_dir / "logs" / "app.log.1", "line\n" * 1000, NOW - 10 * DAY)
    live = make_file(data_dir / "logs" / "app.log", "line\n" * 1000, NOW - 40 * DAY)
    young = make_file(data_dir / "logs" / "other.log.2", "line\n" * 1000, NOW - 6 * DAY)
    assert c.plan_category(cat, data_dir, NOW, TZ, None).compress == []  # compression disabled
    plan = c.plan_category(cat, data_dir, NOW, TZ, 7)
    assert [e.path for e in plan.compress] == [str(old_rotated)]
    assert plan.delete == []  # the live log is never deleted by cleanup, however old
    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok
    gz = Path(str(old_rotated) + ".gz")
    assert gz.exists() and not old_rotated.exists()
    assert gzip.decompress(gz.read_bytes()) == b"line\n" * 1000
    assert os.stat(gz).st_mtime == NOW - 10 * DAY
    assert newest_rotated.exists() and live.exists() and young.exists()


def test_verification_reports_a_file_deleted_that_should_remain(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "backups")
    keep = make_file(data_dir / "backups" / "young.tar.zst", mtime=NOW - 100)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    outcome = c.apply_category(plan)
    keep.unlink()  # something removed a file within retention
    problems = c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert problems and "disappeared" in problems[0]


def test_gzip_refuses_file_held_open(tmp_path):
    path = make_file(tmp_path / "held.log.3", "data\n" * 10)
    with open(path, "ab"):
        held = open_files.open_file_ids()
        assert held is not None and open_files.is_held(str(path), held)
        result = compression.gzip_file(str(path), None, held)
    assert not result.ok and "held open" in result.reason and path.exists()


def test_expired_file_held_open_is_kept(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "logs")
    held_file = make_file(data_dir / "logs" / "quiet.log.1", mtime=NOW - 40 * DAY)
    free_file = make_file(data_dir / "logs" / "quiet.log.2", mtime=NOW - 40 * DAY)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert len(plan.delete) == 2
    with open(held_file, "ab"):
        outcome = c.apply_category(plan, open_files.open_file_ids())
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok and held_file.exists() and not free_file.exists()
    assert [(h.path, h.reason) for h in plan.held] == [(str(held_file), "held open by a process; kept")]


def test_temp_file_removed_by_its_owner_is_not_a_failure(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "temp")
    keep = make_file(data_dir / "temp" / "young.tmp", mtime=NOW - 100)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    outcome = c.apply_category(plan)
    keep.unlink()  # the service that wrote it cleaned up after itself
    assert c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None) == []


def test_backup_archives_are_left_to_the_backup_jobs_verified_retention(tmp_path, data_dir):
    # Backups failing for a week must not let age-based cleanup delete the last good archive.
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "backups")
    archive = make_file(data_dir / "backups" / "backup-20261101T063000Z.tar.zst", b"a" * 10, NOW - 30 * DAY)
    stray = make_file(data_dir / "backups" / "manual_dump.sql", b"b" * 20, NOW - 30 * DAY)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert [e.path for e in plan.delete] == [str(stray)]
    assert str(archive) not in [e.path for e in plan.delete + plan.keep]
    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok and archive.exists() and not stray.exists()


# --- a name date counts only in the dated layouts ------------------------------------------------


@pytest.mark.parametrize(
    "folder,name",
    [
        ("exports/tradenote", "order_20001231.csv"),
        ("exports", "account_PA19990101_positions.csv"),
        ("exports/maintenance", "summary_2019-06-30.json"),
        ("reports/maintenance", "daily_2020-01-02.md"),
        ("reports", "maintenance_report_2020-01-02.md"),  # a project layout, but not in its folder
        ("exports/tradenote", "tradenote_2020-01-02_copy.csv"),
        ("parquet/market_data/AAPL", "2020-01-02.parquet"),  # one folder short of the contract layout
    ],
)
def test_fresh_file_with_a_date_like_name_outside_the_layouts_is_kept_and_reported(tmp_path, data_dir, folder, name):
    settings = _settings(tmp_path, data_dir)
    fresh = make_file(data_dir / folder / name, b"x" * 10, NOW - 3600)
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, NOW, TZ, 7, archived={os.path.realpath(fresh)})
    assert all(str(fresh) not in {e.path for e in p.delete} | {d.path for d in p.duplicates} for p in plans)
    notes = [note for p in plans for path, note in p.notes if path == str(fresh)]
    assert len(notes) == 1 and "age taken from the file's time" in notes[0]
    for plan in plans:
        assert c.apply_category(plan).ok
    assert fresh.exists()


def test_name_date_close_to_the_file_time_is_not_reported(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    day = date(2026, 5, 27)
    make_file(data_dir / "exports" / f"fills_{day:%Y%m%d}.csv", b"x", file_names.day_start(day, TZ) + 20 * 3600)
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, file_names.day_start(day, TZ) + 30 * 3600, TZ, 7)
    assert [n for p in plans for n in p.notes] == []


def test_old_file_with_a_fresh_looking_name_expires_by_its_time(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    old = make_file(data_dir / "exports" / "orders_20260527.csv", b"x", NOW - 200 * DAY)
    plan = c.plan_category(_cat(c.standard_categories(settings), "exports"), data_dir, NOW, TZ, None)
    assert [e.path for e in plan.delete] == [str(old)] and len(plan.notes) == 1


# --- duplicates only where copies are waste -------------------------------------------------------


@pytest.mark.parametrize("folder", ["temp", "logs", "parquet/market_data/AAPL/1min"])
def test_identical_files_are_not_duplicates_outside_exports_reports_backups(tmp_path, data_dir, folder):
    settings = _settings(tmp_path, data_dir)
    a = make_file(data_dir / folder / "strategyA.lock", b"L" * 10_000, NOW - 100)
    b = make_file(data_dir / folder / "strategyB.lock", b"L" * 10_000, NOW - 50)
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, NOW, TZ, None)
    assert [d for p in plans for d in p.duplicates] == []
    for plan in plans:
        c.apply_category(plan)
    assert a.exists() and b.exists()


@pytest.mark.parametrize("folder", ["exports/maintenance", "reports/maintenance", "backups"])
def test_small_identical_files_are_never_deduplicated(tmp_path, data_dir, folder):
    settings = _settings(tmp_path, data_dir)
    a = make_file(data_dir / folder / "strategyA.lock", b"1\n", NOW - 100)
    b = make_file(data_dir / folder / "strategyB.lock", b"1\n", NOW - 50)
    just_below = [make_file(data_dir / folder / f"m{i}.json", b"m" * 4095, NOW - 40) for i in range(2)]
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, NOW, TZ, None)
    assert [d for p in plans for d in p.duplicates] == []
    for plan in plans:
        assert c.apply_category(plan).ok
    assert a.exists() and b.exists() and all(p.exists() for p in just_below)


def test_duplicate_held_open_is_kept(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "exports")
    original = make_file(data_dir / "exports" / "a.csv", SAME, NOW - 100)
    copy = make_file(data_dir / "exports" / "b.csv", SAME, NOW - 50)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert [d.path for d in plan.duplicates] == [str(copy)]
    with open(copy, "rb"):
        outcome = c.apply_category(plan, open_files.open_file_ids())
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok and outcome.deduplicated == [] and copy.exists() and original.exists()
    assert any(h.path == str(copy) and "held open" in h.reason for h in plan.held)


# --- temporary names are their writer's -----------------------------------------------------------


@pytest.mark.parametrize(
    "folder,name",
    [
        ("logs", ".app.log.2.redact.tmp"),
        ("logs", "app.log.3.partial"),
        ("exports/tradenote", ".tradenote_2026-01-02.csv.4242.tmp"),
        ("reports/maintenance", "report.md.tmp"),
        ("backups/.backup-work-abc123", "dump.sql"),
        ("logs", "x.log.2.gz.tmp.gz"),
    ],
)
def test_temporary_files_are_never_compressed_deduplicated_or_expired_by_other_categories(tmp_path, data_dir, folder, name):
    settings = _settings(tmp_path, data_dir)
    temp = make_file(data_dir / folder / name, SAME, NOW - 400 * DAY)
    twin = make_file(data_dir / folder / ("twin-" + name.lstrip(".")), SAME, NOW - 400 * DAY)
    plans = c.plan_cleanup(c.standard_categories(settings), data_dir, NOW, TZ, 7)
    touched = {e.path for p in plans for e in p.delete + p.compress} | {d.path for p in plans for d in p.duplicates}
    assert str(temp) not in touched and str(twin) not in touched
    for plan in plans:
        c.apply_category(plan)
    assert temp.exists() and twin.exists() and not os.path.exists(str(temp) + ".gz")


def test_temp_folder_retention_still_applies_to_temporary_names(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    old = make_file(data_dir / "temp" / "download.partial", mtime=NOW - 3 * DAY)
    plan = c.plan_category(_cat(c.standard_categories(settings), "temp"), data_dir, NOW, TZ, None)
    assert [e.path for e in plan.delete] == [str(old)]


def test_gzip_temporary_of_a_dead_process_is_removed_by_the_next_run_never_compressed(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "logs")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    legacy = make_file(data_dir / "logs" / ".app.log.2.gz.tmp", b"partial gzip", NOW - 10 * DAY)
    crashed = make_file(data_dir / "logs" / f".app.log.3.gz.{dead.pid}.tmp", b"partial gzip", NOW - 10 * DAY)
    live = make_file(data_dir / "logs" / f".app.log.4.gz.{os.getpid()}.tmp", b"partial gzip", NOW - 10 * DAY)
    held = make_file(data_dir / "logs" / ".other.log.2.gz.tmp", b"partial gzip", NOW - 10 * DAY)
    plan = c.plan_category(cat, data_dir, NOW, TZ, 7)
    assert sorted(t.path for t in plan.stale_temporaries) == sorted([str(legacy), str(crashed), str(held)])
    assert plan.compress == [] and plan.delete == []
    with open(held, "rb"):
        outcome = c.apply_category(plan, open_files.open_file_ids())
    assert outcome.ok and sorted(t.path for t in outcome.stale_removed) == sorted([str(legacy), str(crashed)])
    assert not legacy.exists() and not crashed.exists() and live.exists() and held.exists()
    assert not list((data_dir / "logs").glob("*.tmp.gz"))


def test_gzip_writes_under_a_temporary_name_carrying_its_process_id_and_host(tmp_path, monkeypatch):
    path = make_file(tmp_path / "x.log.3", "line\n" * 100)
    seen = []
    real_open = open

    def spy(file, mode="r", *args, **kwargs):
        if "w" in mode or "x" in mode:
            seen.append(os.path.basename(str(file)))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    assert compression.gzip_file(str(path)).ok
    assert len(seen) == 1 and seen[0].endswith(".tmp") and file_names.is_temporary_name(seen[0])
    assert parse_temporary_name(seen[0]) == TemporaryName("x.log.3.gz", os.getpid(), host_label())
    assert not compression.gzip_file(str(make_file(tmp_path / ".y.log.gz.tmp", "z"))).ok


def test_dead_gzip_temporary_in_the_current_name_format_is_removed_live_and_foreign_ones_stay(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "logs")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    logs = data_dir / "logs"
    crashed = make_file(logs / f".app.log.3.gz.{dead.pid}@{host_label()}.0badc0de.tmp", b"half", NOW - 10 * DAY)
    live = make_file(logs / f".app.log.4.gz.{os.getpid()}@{host_label()}.0badc0de.tmp", b"half", NOW - 10 * DAY)
    other_host = make_file(logs / f".app.log.5.gz.{dead.pid}@not-{host_label()}.0badc0de.tmp", b"half", NOW - 10 * DAY)
    report_temp = make_file(logs / f".report.md.{dead.pid}@{host_label()}.0badc0de.tmp", b"half", NOW - 10 * DAY)
    plan = c.plan_category(cat, data_dir, NOW, TZ, 7)
    assert [t.path for t in plan.stale_temporaries] == [str(crashed)]
    assert sorted(plan.temporaries) == sorted(str(p) for p in (live, other_host, report_temp))  # left to their writers
    outcome = c.apply_category(plan, open_files.open_file_ids())
    assert outcome.ok and not crashed.exists() and live.exists() and other_host.exists() and report_temp.exists()
