"""Retention planning and applying (core/cleanup.py) on real files: boundaries, dry run, symlinks,
duplicates, compression, market-data archive coverage, verification."""

from __future__ import annotations

import gzip
import os
from datetime import date
from pathlib import Path

import pytest

from trading_maintenance.core import cleanup as c
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


@pytest.mark.parametrize("category,folder,retention", [("exports", "exports/tradenote", 90), ("reports", "reports/maintenance", 90)])
def test_name_date_cutoff_exact_boundary_and_one_second_either_side(tmp_path, data_dir, category, folder, retention):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), category)
    day = date(2026, 1, 15)
    # mtime is recent: the date in the name decides
    f = make_file(data_dir / folder / f"tradenote_{day.isoformat()}.csv", "Account,T/D\n", NOW)
    undated = make_file(data_dir / folder / "notes.txt", "x", NOW - (retention - 1) * DAY)
    boundary = c.day_start(day, TZ) + retention * DAY
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
    assert c.date_from_name("2026-03-02.parquet") == date(2026, 3, 2)
    assert c.date_from_name("export_20260302.csv") == date(2026, 3, 2)
    assert c.date_from_name("trading_system.log.3") is None
    assert c.date_from_name("order_12345678901.csv") is None  # digits that are no date
    assert c.date_from_name("2026-13-40.csv") is None


def test_market_data_deleted_only_when_archived(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "market_data")
    base = data_dir / "parquet" / "market_data" / "AAPL" / "1min"
    archived_old = make_file(base / "2025-01-02.parquet", b"p" * 50, NOW)
    unarchived_old = make_file(base / "2025-01-03.parquet", b"p" * 60, NOW)
    young = make_file(base / "2026-05-20.parquet", b"p" * 70, NOW)
    now = c.day_start(date(2026, 5, 21), TZ)
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


def test_identical_duplicates_reduced_to_one(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "exports")
    first = make_file(data_dir / "exports" / "tradenote" / "a.csv", "same content\n", NOW - 3 * DAY)
    second = make_file(data_dir / "exports" / "tradenote" / "b.csv", "same content\n", NOW - 2 * DAY)
    third = make_file(data_dir / "exports" / "maintenance" / "c.csv", "same content\n", NOW - 1 * DAY)
    other = make_file(data_dir / "exports" / "maintenance" / "d.csv", "same length!!\n"[:13] + "\n", NOW - 1 * DAY)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert sorted(d.path for d in plan.duplicates) == sorted([str(second), str(third)])
    assert {d.original for d in plan.duplicates} == {str(first)}
    outcome = c.apply_category(plan)
    c.verify_category(plan, outcome, cat, data_dir, NOW, TZ, None)
    assert outcome.ok and len(outcome.deduplicated) == 2
    assert first.exists() and other.exists() and not second.exists() and not third.exists()


def test_duplicate_changed_after_planning_is_kept(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "temp")
    a = make_file(data_dir / "temp" / "a.bin", b"1234", NOW - 100)
    b = make_file(data_dir / "temp" / "b.bin", b"1234", NOW - 50)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert len(plan.duplicates) == 1
    b.write_bytes(b"5678")
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
        held = c.open_file_ids()
        assert held is not None and c.is_held(str(path), held)
        result = c.gzip_file(str(path), None, held)
    assert not result.ok and "held open" in result.reason and path.exists()


def test_expired_file_held_open_is_kept(tmp_path, data_dir):
    settings = _settings(tmp_path, data_dir)
    cat = _cat(c.standard_categories(settings), "logs")
    held_file = make_file(data_dir / "logs" / "quiet.log.1", mtime=NOW - 40 * DAY)
    free_file = make_file(data_dir / "logs" / "quiet.log.2", mtime=NOW - 40 * DAY)
    plan = c.plan_category(cat, data_dir, NOW, TZ, None)
    assert len(plan.delete) == 2
    with open(held_file, "ab"):
        outcome = c.apply_category(plan, c.open_file_ids())
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
