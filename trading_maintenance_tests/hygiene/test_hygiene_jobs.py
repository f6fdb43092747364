"""The data cleanup, performance and resource optimization jobs run in-process with real resources;
the whole Definitions loads with every hygiene job and schedule."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import dagster as dg
from sqlalchemy import create_engine, text

from trading_maintenance.core.hygiene import performance as perf
from trading_maintenance.defs.hygiene.data_cleanup import data_cleanup_job
from trading_maintenance.defs.hygiene.performance_optimization import performance_optimization_job
from trading_maintenance.defs.hygiene.resource_optimization import resource_optimization_job
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.hygiene.conftest import make_file

DAY = 86400
HOUR = 3600


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def test_data_cleanup_job_dry_run_then_real(tmp_path, data_dir, redis_client, run_job):
    config = write_config(tmp_path, data_dir)
    now = time.time()
    expired = [
        make_file(data_dir / "temp" / "old.tmp", b"t" * 10, now - DAY - HOUR),
        make_file(data_dir / "logs" / "app.log.3.gz", b"l" * 20, now - 30 * DAY - HOUR),
        make_file(data_dir / "backups" / "b1.tar.zst", b"b" * 30, now - 7 * DAY - HOUR),
        make_file(data_dir / "exports" / "tradenote" / "tradenote_2020-01-02.csv", b"e" * 40, now),  # dated name: old
        make_file(data_dir / "reports" / "maintenance" / "maintenance_report_2020-01-02.md", b"r" * 50, now),
    ]
    kept = [
        make_file(data_dir / "temp" / "young.tmp", b"y" * 10, now - DAY + HOUR),
        make_file(data_dir / "logs" / "app.log", b"l" * 20, now - 90 * DAY),  # live log: rotation's business
        make_file(data_dir / "backups" / "b2.tar.zst", b"c" * 30, now - 7 * DAY + HOUR),
    ]
    unarchived = make_file(data_dir / "parquet" / "market_data" / "AAPL" / "1day" / "2020-01-02.parquet", b"p" * 60, now)
    outside = make_file(tmp_path / "outside" / "keep.txt", b"o", now - 500 * DAY)
    os.symlink(outside, data_dir / "temp" / "escape")
    before = _tree(data_dir)

    dry = run_job(data_cleanup_job, config=config, run_config={"ops": {"clean_data_files": {"config": {"dry_run": True}}}})
    assert dry.success
    assert _tree(data_dir) == before
    out = dry.output_for_node("clean_data_files")
    assert out["planned_deletions"] == 5 and out["files_deleted"] == 0
    assert sum(1 for a in out["actions"] if a["action"] == "would delete") == 5

    real = run_job(data_cleanup_job, config=config)
    assert real.success
    out = real.output_for_node("clean_data_files")
    assert out["files_deleted"] == 5 and out["bytes_freed"] == 150 and out["files_held"] == 1
    assert all(not p.exists() for p in expired)
    assert all(p.exists() for p in kept) and unarchived.exists() and outside.exists()
    assert os.path.islink(data_dir / "temp" / "escape")
    held = [a for a in out["actions"] if a["category"] == "market_data"]
    assert held and held[0]["reason"] == "not archived, kept"
    published = json.loads(redis_client.get("maintenance:result:data_cleanup"))
    assert published["status"] == "success" and published["files_deleted"] == 5
    cats = {row["category"]: row for row in out["categories"]}
    assert cats["temp"]["deleted_files"] == 1 and cats["temp"]["kept_files"] == 1


def _output_metadata(result, node: str) -> dict:
    event = next(e for e in result.events_for_node(node) if e.event_type_value == "STEP_OUTPUT")
    return event.event_specific_data.metadata


def test_data_cleanup_dry_run_shows_the_actions_first_and_counts_what_it_keeps(tmp_path, data_dir, run_job):
    config = write_config(tmp_path, data_dir)
    now = time.time()
    for i in range(300):  # old daily files no archive covers: kept
        make_file(data_dir / "parquet" / "market_data" / f"S{i:03d}" / "1min" / "2020-01-02.parquet", b"p", now)
    expired = [make_file(data_dir / "temp" / f"zz_old_{i}.tmp", b"t", now - 3 * DAY) for i in range(3)]
    dry = run_job(data_cleanup_job, config=config, run_config={"ops": {"clean_data_files": {"config": {"dry_run": True}}}})
    assert dry.success and all(p.exists() for p in expired)
    actions = dry.output_for_node("clean_data_files")["actions"]
    assert [a["action"] for a in actions[:3]] == ["would delete"] * 3
    keep_rows = [a for a in actions if a["action"] == "keep"]
    assert len(keep_rows) == 1 and keep_rows[0]["files"] == 300 and keep_rows[0]["reason"] == "not archived, kept"
    table = _output_metadata(dry, "clean_data_files")["actions"].md_str.splitlines()
    assert all("would delete" in line for line in table[2:5]) and "300" in table[5]


def test_idle_in_transaction_sessions_reported_and_terminated_only_when_configured(pg_url):
    engine = create_engine(pg_url)
    idle = create_engine(pg_url).connect()
    idle.execute(text("SELECT 1"))  # opens a transaction and leaves it idle
    time.sleep(1.2)
    report = perf.database_sessions(engine, 0.5, terminate=False, dry_run=False)
    assert report["available"] and len(report["idle_in_transaction"]) == 1
    assert report["idle_in_transaction"][0]["terminated"] is False
    dry = perf.database_sessions(engine, 0.5, terminate=True, dry_run=True)
    assert dry["idle_in_transaction"][0]["terminated"] is False
    acted = perf.database_sessions(engine, 0.5, terminate=True, dry_run=False)
    assert acted["idle_in_transaction"][0]["terminated"] is True
    # pg_terminate_backend signals the backend; it leaves pg_stat_activity a moment later
    deadline = time.time() + 10
    while perf.database_sessions(engine, 0.5, terminate=False, dry_run=False)["idle_in_transaction"] and time.time() < deadline:
        time.sleep(0.1)
    assert perf.database_sessions(engine, 0.5, terminate=False, dry_run=False)["idle_in_transaction"] == []
    idle.invalidate()
    engine.dispose()


def test_performance_job_measures_and_writes_report(tmp_path, data_dir, redis_client, run_job):
    config = write_config(tmp_path, data_dir)
    redis_client.set("cache:no_ttl", "x")
    redis_client.set("price_cache:big", "v" * 200_000)
    make_file(data_dir / "parquet" / "market_data" / "AAPL" / "1min" / "2026-01-02.parquet", b"p" * 5000)
    make_file(data_dir / "logs" / "app.log", b"l" * 100)

    dry = run_job(performance_optimization_job, config=config, run_config={"ops": {"measure_performance": {"config": {"dry_run": True}}}})
    assert dry.success and not (data_dir / "reports").exists()

    res = run_job(performance_optimization_job, config=config)
    assert res.success
    out = res.output_for_node("measure_performance")
    assert out["redis"]["largest_keys"][0]["key"] == "price_cache:big"
    assert out["redis"]["cache_keys_without_ttl"] == 2
    assert any("cache keys have no TTL" in r for r in out["recommendations"])
    assert out["database"]["available"] is False  # embedded SQLite: said so, not invented
    folders = {f["folder"]: f["bytes"] for f in out["disk"]["largest_folders"]}
    assert folders["parquet"] == 5000 and folders["logs"] == 100
    assert Path(out["report_path"]).read_text().startswith("# Performance report")
    assert out["db_sessions_terminated"] == 0
    assert json.loads(redis_client.get("maintenance:result:performance_optimization"))["status"] == "success"


def test_resource_optimization_job(tmp_path, data_dir, redis_client, run_job):
    config = write_config(tmp_path, data_dir, hygiene={"maintenance_list_caps": {"maintenance:audit": 100, "maintenance:custom": 10}})
    r = redis_client
    r.rpush("maintenance:audit", *[f"h{i}" for i in range(150)])  # index 0 is the newest (LPUSH order)
    r.rpush("maintenance:custom", *[f"c{i}" for i in range(25)])
    r.rpush("maintenance:other", *[f"o{i}" for i in range(5)])
    r.set("maintenance:result:x", "{}")
    now = time.time()
    old_rotated = make_file(data_dir / "logs" / "app.log.2", "line\n" * 500, now - 10 * DAY)
    newest_rotated = make_file(data_dir / "logs" / "app.log.1", "line\n" * 500, now - 10 * DAY)
    old_export = make_file(data_dir / "exports" / "tradenote" / "tradenote_2026-01-02.csv", "a,b\n" * 500, now)
    young_export = make_file(data_dir / "exports" / "maintenance" / "notes.csv", "a,b\n" * 500, now - DAY)
    before = _tree(data_dir)

    dry = run_job(resource_optimization_job, config=config, run_config={"ops": {"optimize_resources": {"config": {"dry_run": True}}}})
    assert dry.success
    out = dry.output_for_node("optimize_resources")
    assert (out["planned_list_trims"], out["planned_list_entries"], out["planned_gzips"]) == (2, 65, 2)
    assert out["purged"] is False and r.llen("maintenance:audit") == 150 and _tree(data_dir) == before

    res = run_job(resource_optimization_job, config=config)
    assert res.success
    out = res.output_for_node("optimize_resources")
    assert (out["lists_trimmed"], out["list_entries_removed"], out["files_gzipped"]) == (2, 65, 2)
    assert out["purged"] == out["purge_needed"]
    assert r.llen("maintenance:audit") == 100 and r.lindex("maintenance:audit", 0) == b"h0"
    assert r.llen("maintenance:custom") == 10 and r.llen("maintenance:other") == 5
    assert not old_rotated.exists() and gzip.decompress(Path(str(old_rotated) + ".gz").read_bytes()) == b"line\n" * 500
    assert not old_export.exists() and Path(str(old_export) + ".gz").exists()
    assert newest_rotated.exists() and young_export.exists()
    assert json.loads(r.get("maintenance:result:resource_optimization"))["lists_trimmed"] == 2


def test_definitions_load_with_hygiene_jobs_and_schedules():
    from trading_maintenance.definitions import defs

    repo = defs.get_repository_def()
    for job in (
        "data_cleanup_job",
        "log_rotation_job",
        "cache_cleanup_job",
        "api_rate_limit_job",
        "performance_optimization_job",
        "resource_optimization_job",
    ):
        assert repo.has_job(job), job
    expected = {
        "api_rate_limit_schedule": "1 0 * * *",
        "data_cleanup_schedule": "0 2 * * *",
        "log_rotation_schedule": "30 2 * * *",
        "cache_cleanup_schedule": "0 3 * * *",
        "performance_optimization_schedule": "0 2 * * 0",
    }
    for name, cron in expected.items():
        schedule = repo.get_schedule_def(name)
        assert schedule.cron_schedule == cron and schedule.execution_timezone == "America/New_York"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.description
    from trading_maintenance.tasks import TASKS

    for task in ("data_cleanup", "log_rotation", "cache_cleanup", "api_rate_limit_reset", "performance_optimization", "resource_optimization"):
        assert repo.has_job(TASKS[task].job_name)
    emergency = repo.get_job("emergency_maintenance_job")
    assert "emergency_cache_cleanup" in {node.name for node in emergency.graph.node_defs}


def test_data_cleanup_deletes_only_market_data_a_verified_archive_covers(tmp_path, data_dir, run_job):
    from datetime import date

    from trading_maintenance.core.market_data.consolidate import consolidate_month
    from trading_maintenance_tests.market_data import synth as synth

    config = write_config(tmp_path, data_dir)
    market = data_dir / "parquet" / "market_data"
    archived_days = synth.generate(market, ["AAPL", "MSFT"], date(2025, 1, 2), date(2025, 1, 6), timeframe="1h", dup_fraction=0, shuffle=False)
    result = consolidate_month(market, "2025-01", max_workers=1)
    assert result is not None
    late = synth.write_daily(market, synth.session_bars("AAPL", date(2025, 1, 7), "1h"), "AAPL", "1h", date(2025, 1, 7))
    recent_day = synth.last_trading_day_before(date.today())
    recent = synth.write_daily(market, synth.session_bars("AAPL", recent_day, "1h"), "AAPL", "1h", recent_day)
    archives = sorted((data_dir / "parquet" / "archive").rglob("*.parquet"))
    assert len(archives) == 2

    res = run_job(data_cleanup_job, config=config)
    assert res.success
    out = res.output_for_node("clean_data_files")
    assert out["market_data_coverage"].startswith("verified monthly archives")
    assert all(not p.exists() for p in archived_days)
    assert late.exists() and recent.exists()  # written after the archive / within retention
    held = [a for a in out["actions"] if a["category"] == "market_data" and a["action"] == "keep"]
    assert [a["path"] for a in held] == ["parquet/market_data/AAPL/1h/2025-01-07.parquet"]
    assert all(a.exists() for a in archives)
    assert {row["category"]: row["deleted_files"] for row in out["categories"]}["market_data"] == len(archived_days)


def test_data_cleanup_job_keeps_fresh_date_like_names_and_copies_in_use(tmp_path, data_dir, redis_client, run_job):
    config = write_config(tmp_path, data_dir)
    now = time.time()
    fresh = [
        make_file(data_dir / "exports" / "tradenote" / "order_20001231.csv", b"o" * 100, now - HOUR),
        make_file(data_dir / "exports" / "account_PA19990101_positions.csv", b"a" * 100, now - HOUR),
    ]
    payload = b"export row\n" * 1000
    original = make_file(data_dir / "exports" / "maintenance" / "summary_a.json", payload, now - 3 * HOUR)
    in_use = make_file(data_dir / "exports" / "maintenance" / "summary_b.json", payload, now - 2 * HOUR)
    spare = make_file(data_dir / "exports" / "maintenance" / "summary_c.json", payload, now - HOUR)
    dry_config = {"ops": {"clean_data_files": {"config": {"dry_run": True}}}}
    with open(in_use, "rb"):
        dry = run_job(data_cleanup_job, config=config, run_config=dry_config)
        out = dry.output_for_node("clean_data_files")
        assert [a["path"] for a in out["actions"] if a["action"] == "would delete duplicate"] == ["exports/maintenance/summary_c.json"]
        assert any(a["action"] == "keep" and "held open" in a["reason"] and a["path"].endswith("summary_b.json") for a in out["actions"])
        real = run_job(data_cleanup_job, config=config)
    assert real.success
    out = real.output_for_node("clean_data_files")
    assert out["files_deleted"] == 0 and out["duplicates_removed"] == 1 and out["name_date_notes"] == 2
    assert all(p.exists() for p in fresh) and original.exists() and in_use.exists() and not spare.exists()
    notes = [a for a in out["actions"] if a["action"] == "note"]
    assert {a["path"] for a in notes} == {"exports/tradenote/order_20001231.csv", "exports/account_PA19990101_positions.csv"}
    assert json.loads(redis_client.get("maintenance:result:data_cleanup"))["status"] == "success"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_performance_with_redis_down_fails_naming_the_masked_cause(tmp_path, data_dir, run_job, make_resources):
    from trading_maintenance.resources import RedisResource

    password = "Sup3rSecretRedisPw"
    down = RedisResource(url=f"redis://:{password}@127.0.0.1:{_closed_port()}/0", data_dir=str(data_dir))
    result = performance_optimization_job.execute_in_process(
        resources=make_resources(config=write_config(tmp_path, data_dir), redis=down), raise_on_error=False
    )
    assert not result.success
    message = result.failure_data_for_node("measure_performance").error.message
    assert "performance_optimization: 1 part(s) failed: redis measurement failed: " in message
    assert "REDIS_URL" in message and "Connection refused" in message and password not in message


def test_failure_message_lists_each_part_bounded_and_masked():
    from trading_maintenance.core.hygiene.failures import CAUSES_IN_MESSAGE, failure_message, part_failed

    parts = [part_failed(f"part {i}", ConnectionError(f"redis://:pw-{i}-secret@db:6379 refused\nsecond line")) for i in range(7)]
    message = failure_message("data_cleanup", parts)
    assert message.startswith("data_cleanup: 7 part(s) failed: part 0 failed: ConnectionError: redis://:***@db:6379 refused; part 1")
    assert "secret" not in message and "second line" not in message
    assert f"part {CAUSES_IN_MESSAGE - 1} failed" in message and f"part {CAUSES_IN_MESSAGE} failed" not in message
    assert message.endswith(f"(and {7 - CAUSES_IN_MESSAGE} more in the run's metadata)")


def test_a_failed_list_trim_names_its_cause(redis_client):
    redis_client.set("maintenance:audit", "a string where a list was")
    trim = perf.ListTrim("maintenance:audit", 150, 100)
    perf.apply_list_trims(redis_client, [trim])
    assert trim.status.startswith("error: ResponseError: ") and "WRONGTYPE" in trim.status and redis_client.get("maintenance:audit")
