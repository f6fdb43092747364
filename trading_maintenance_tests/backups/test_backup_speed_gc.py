"""The cyclic garbage collector is paused while a backup builds or decodes its thousands of entries, and
always left as it was found, whatever happens."""

from __future__ import annotations

import gc
from datetime import datetime, timezone

import pytest

from trading_maintenance.core.backups import snapshot_writer
from trading_maintenance.core.backups.repository import Repository
from trading_maintenance.core.common.gc_pause import paused_gc
from trading_maintenance_tests.backups.repository_helpers import backup_tree, write_tree

KEY = "gc-test-key-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def collector_enabled():
    yield
    gc.enable()


def test_paused_gc_restores_the_collectors_state_even_after_an_error():
    gc.enable()
    with pytest.raises(RuntimeError):
        with paused_gc():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()  # a caller that had it off keeps it off


def test_a_backup_records_members_with_the_collector_paused_and_leaves_it_on(tmp_path, data_dir, monkeypatch):
    write_tree(data_dir, files=4, size=20_000)
    seen = []
    real = snapshot_writer.SnapshotWriter._record

    def watching(self, *args, **kwargs):
        seen.append(gc.isenabled())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(snapshot_writer.SnapshotWriter, "_record", watching)
    gc.enable()
    backup_tree(Repository.open_or_create(data_dir / "backups", KEY), data_dir, tmp_path, NOW, KEY)
    assert seen and not any(seen)
    assert gc.isenabled()


def test_a_failing_backup_leaves_the_collector_on(tmp_path, data_dir, monkeypatch):
    write_tree(data_dir, files=3, size=20_000)

    def failing(self, *args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(snapshot_writer.SnapshotWriter, "_add_one", failing)
    gc.enable()
    with pytest.raises(OSError):
        backup_tree(Repository.open_or_create(data_dir / "backups", KEY), data_dir, tmp_path, NOW, KEY)
    assert gc.isenabled()


def test_the_end_of_a_pause_collects_only_the_young_objects():
    gc.enable()
    thresholds = gc.get_threshold()
    generations: list[int] = []

    def record(phase, info):
        if phase == "start":
            generations.append(info["generation"])

    # an older generation due for collection, as in a long-running process: a collection the allocations
    # started would take it too (whole-heap collections are the same rule one generation up)
    gc.set_threshold(700, 1, 10**9)
    gc.collect()
    gc.collect(0)
    gc.collect(0)
    gc.callbacks.append(record)
    try:
        with paused_gc():
            built = [{"member": i} for i in range(100_000)]
            assert generations == []
        after = [[i] for i in range(10)]
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)
    assert len(built) == 100_000 and len(after) == 10
    assert generations == [0]  # collected on the way out, the young generation alone
