"""Reports: numbers equal run storage, formats, CLI, and the HTML drawn by a real headless browser."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from trading_maintenance.core.reports.generate import generate_report, report_period
from trading_maintenance.settings import load_settings
from trading_maintenance_tests.reports.conftest import run, store_health

NY = ZoneInfo("America/New_York")
REPO = Path(__file__).resolve().parents[2]


def _seed(instance) -> None:
    for freed in (1000, 3000, 5000):
        run(instance, "data_cleanup", freed=freed)
    run(instance, "data_cleanup", dry_run=True, freed=99999)
    run(instance, "data_cleanup", fail=True)
    run(instance, "log_rotation", freed=700)
    run(instance, "log_rotation", dry_run=True, fail=True)
    run(instance, "backup", fail=True)
    now = time.time()
    # every sample inside today's daily window (New York's calendar day), also in the first hours after its midnight
    today_start = report_period("daily")[0]
    step = min(600.0, (now - today_start) / 13)
    for i in range(12):
        store_health(instance, now - step * (12 - i), health_score=90.0 - i, disk_percent=60.0 + i, cpu_percent=20.0 + i % 3,
                     memory_percent=50.0, redis_used_memory_bytes=1e6 + i * 1e4)


def _independent(instance) -> dict:
    """What run storage says, computed without the report code."""
    table: dict[str, dict] = {}
    for record in instance.get_run_records(dg.RunsFilter()):
        run_ = record.dagster_run
        task = run_.tags["maintenance/task"]
        row = table.setdefault(task, {"runs": 0, "succeeded": 0, "failed": 0, "dry_runs": 0, "bytes_freed": 0})
        if run_.run_config["ops"]["work"]["config"]["dry_run"]:
            row["dry_runs"] += 1
            continue
        row["runs"] += 1
        row["succeeded" if run_.status == dg.DagsterRunStatus.SUCCESS else "failed"] += 1
        for event in instance.all_logs(run_.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
            row["bytes_freed"] += event.dagster_event.step_output_data.metadata["bytes_freed"].value
    return table


def _settings(data_dir):
    return load_settings(None).model_copy(update={"data_dir": data_dir})


def test_daily_report_numbers_equal_run_storage(instance, data_dir):
    _seed(instance)
    expected = _independent(instance)
    settings = _settings(data_dir)
    path = generate_report(instance, "daily", "json", settings=settings)
    assert path.parent == data_dir / "reports" / "maintenance" / "daily"
    report = json.loads(path.read_text())
    got = {t["task"]: {k: t[k] for k in ("runs", "succeeded", "failed", "dry_runs", "bytes_freed")} for t in report["tasks"]}
    assert got == expected
    assert got["data_cleanup"] == {"runs": 4, "succeeded": 3, "failed": 1, "dry_runs": 1, "bytes_freed": 9000}
    cleanup = next(t for t in report["tasks"] if t["task"] == "data_cleanup")
    assert cleanup["files_processed"] == 6 and cleanup["duration_p50_s"] is not None
    errors = {f["task"]: f for f in report["failures"] if not f["dry_run"]}
    assert errors["backup"]["error"] == "PermissionError: cannot remove /data/temp/x.tmp: permission denied"
    assert errors["backup"]["error_type"] == "PermissionError"
    disk = report["resources"]["disk_percent"]["current"]
    assert (disk["samples"], disk["min"], disk["max"]) == (12, 60.0, 71.0)
    assert report["recommendations"][0]["topic"] == "disk_percent" and report["recommendations"][0]["severity"] == "critical"

    csv_path = generate_report(instance, "daily", "csv", settings=settings)
    rows = {r["task"]: r for r in csv.DictReader(csv_path.open())}
    assert {k: int(rows["data_cleanup"][k]) for k in ("runs", "succeeded", "failed")} == {"runs": 4, "succeeded": 3, "failed": 1}


def test_weekly_and_custom_sections(instance, data_dir):
    _seed(instance)
    settings = _settings(data_dir)
    today = datetime.now(NY).date()
    custom = json.loads(generate_report(instance, "custom", "json", since=today - timedelta(days=1), until=today, settings=settings).read_text())
    patterns = {(p["task"], p["error_type"]): p["count"] for p in custom["error_patterns"]}
    assert patterns == {("data_cleanup", "PermissionError"): 1, ("backup", "PermissionError"): 1, ("log_rotation", "PermissionError"): 1}
    assert {b["task"]: b["runs"] for b in custom["benchmarks"]} == {"data_cleanup": 3, "log_rotation": 1}
    start, end, label = report_period("weekly", today + timedelta(days=7))
    weekly = json.loads(generate_report(instance, "weekly", "json", period=(start, end, label), settings=settings).read_text())
    assert weekly["efficiency"]["bytes_freed"] == 9700
    assert [r["task"] for r in weekly["effectiveness"]][0] in ("data_cleanup", "log_rotation")
    with pytest.raises(ValueError, match="unknown section 'bogus'"):
        generate_report(instance, "daily", "json", sections=["bogus"], settings=settings)


def test_cli_writes_a_report_and_names_a_bad_option(tmp_path, data_dir):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRADING_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "trading_maintenance.cli", "maintenance", "report"]
    ok = subprocess.run(cmd + ["--type", "custom", "--format", "csv", "--since", "2026-01-05", "--until", "2026-01-09"],
                        env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert ok.returncode == 0, ok.stderr
    path = Path(ok.stdout.strip().splitlines()[-1])
    assert path == data_dir / "reports" / "maintenance" / "custom" / "maintenance_report_custom_2026-01-05_to_2026-01-09.csv"
    assert path.read_text().startswith("task,runs,succeeded,failed")
    bad = subprocess.run(cmd + ["--type", "daily", "--sections", "tasks,nope"], env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "unknown section 'nope'" in bad.stderr and "Traceback" not in bad.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_report_draws_its_charts_in_a_headless_browser(instance, data_dir):
    _seed(instance)
    path = generate_report(instance, "daily", "html", settings=_settings(data_dir))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert "<polyline" in dom.stdout and dom.stdout.count("<svg") >= 5
    assert "cannot remove /data/temp/x.tmp" in dom.stdout
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "maintenance_report_daily.png"
    shot.unlink(missing_ok=True)
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,1600", f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
