"""Emergency maintenance: re-checks health, clears temp files past retention, dry run touches nothing."""

import json
import os
import time

import dagster as dg
import pytest

from trading_maintenance.defs.emergency.jobs import emergency_maintenance_job


@pytest.fixture
def temp_files(data_dir):
    temp = data_dir / "temp"
    (temp / "sub").mkdir(parents=True)
    now = time.time()
    files = {}
    for name, age in {"old.tmp": 2 * 86400, "sub/older.tmp": 5 * 86400, "fresh.tmp": 3600, "edge.tmp": 86400 - 60}.items():
        path = temp / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - age, now - age))
        files[name] = path
    outside = data_dir.parent / "outside.tmp"
    outside.write_bytes(b"precious")
    os.utime(outside, (now - 10 * 86400, now - 10 * 86400))
    (temp / "link.tmp").symlink_to(outside)
    files["outside"] = outside
    return files


def test_emergency_job_deletes_only_expired_temp_files(make_resources, temp_files, redis_client):
    with dg.instance_for_test() as instance:
        result = emergency_maintenance_job.execute_in_process(resources=make_resources(), instance=instance)
    assert result.success
    assert not temp_files["old.tmp"].exists() and not temp_files["sub/older.tmp"].exists()
    assert temp_files["fresh.tmp"].exists() and temp_files["edge.tmp"].exists()
    assert temp_files["outside"].read_bytes() == b"precious"
    summary = result.output_for_node("clean_expired_temp_files")
    assert summary["deleted_files"] == 2 and summary["bytes_freed"] == 200 and summary["problems"] == []
    assert any("symlink" in s for s in summary["skipped"])
    stored = json.loads(redis_client.get("maintenance:result:emergency_maintenance"))
    assert stored["status"] == "success" and stored["temp_cleanup"]["deleted_files"] == 2
    assert any(json.loads(a)["title"] == "Emergency maintenance ran" for a in redis_client.lrange("maintenance:alerts", 0, -1))


def test_emergency_dry_run_deletes_nothing_and_reports_the_plan(make_resources, temp_files):
    with dg.instance_for_test() as instance:
        result = emergency_maintenance_job.execute_in_process(
            resources=make_resources(),
            instance=instance,
            run_config={"ops": {"clean_expired_temp_files": {"config": {"dry_run": True}}}},
        )
    assert result.success
    assert all(path.exists() for path in temp_files.values())
    summary = result.output_for_node("clean_expired_temp_files")
    assert summary["planned_files"] == 2 and summary["deleted_files"] == 0 and summary["dry_run"] is True
