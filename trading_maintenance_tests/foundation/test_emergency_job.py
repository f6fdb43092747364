"""Emergency maintenance: re-checks health, clears temp files past retention, dry run touches nothing."""

import json
import os
import time

import dagster as dg
import pytest

from trading_maintenance.defs.emergency.ops import emergency_maintenance_job


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
    redis_client.set("cache:quote:AAPL", "1")  # a cache key without TTL: the cache cleanup gives it one
    redis_client.set("trading:emergency_stop", "false")
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
    assert stored["cache_cleanup"]["ok"] is True
    assert redis_client.ttl("cache:quote:AAPL") > 0 and redis_client.ttl("trading:emergency_stop") == -1
    assert any(json.loads(a)["title"] == "Emergency maintenance ran" for a in redis_client.lrange("maintenance:alerts", 0, -1))


def test_emergency_dry_run_deletes_nothing_and_reports_the_plan(make_resources, temp_files):
    with dg.instance_for_test() as instance:
        result = emergency_maintenance_job.execute_in_process(
            resources=make_resources(),
            instance=instance,
            run_config={"ops": {name: {"config": {"dry_run": True}} for name in ("clean_expired_temp_files", "emergency_cache_cleanup")}},
        )
    assert result.success
    assert all(path.exists() for path in temp_files.values())
    summary = result.output_for_node("clean_expired_temp_files")
    assert summary["planned_files"] == 2 and summary["deleted_files"] == 0 and summary["dry_run"] is True


def test_emergency_with_redis_down_still_cleans_files_and_reports_failure(make_resources, temp_files, data_dir):
    import socket

    from trading_maintenance.resources import RedisResource

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    resources = make_resources(redis=RedisResource(url=f"redis://127.0.0.1:{port}/0", data_dir=str(data_dir), socket_timeout_seconds=0.5))
    with dg.instance_for_test() as instance:
        result = emergency_maintenance_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
    assert not result.success  # partly failed: reported as failure
    assert not temp_files["old.tmp"].exists()  # the file part still did its work
    cache = result.output_for_node("emergency_cache_cleanup")
    assert cache["ok"] is False and "Connection" in cache["error"]
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "report_emergency_maintenance"
