"""security_audit_job end to end: real Redis, real files, a real Dagster instance."""

import gzip
import json
import os
import random

import dagster as dg
import pytest

from trading_maintenance.core.security import findings
from trading_maintenance.core.security.sarif import validate_sarif
from trading_maintenance.definitions import defs as all_defs
from trading_maintenance.defs.security.ops import security_audit_job, security_audit_schedule
from trading_maintenance.run_launch import OpConfigError, dry_run_config, op_config_from_pairs
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.security.samples import DECOYS, latest_audit_report, planted_lines

AUDIT_JOB = all_defs.resolve_job_def("security_audit_job")
UNUSED_PORTS = {"redis": 1, "postgresql": 2, "dagster_webserver": 4}


def _plant(data_dir, rng):
    planted = planted_lines(rng)
    logs = data_dir / "logs"
    logs.mkdir()
    live_lines, rotated_lines = [], []
    for i, (_, _, line) in enumerate(planted):
        (live_lines if i % 2 else rotated_lines).append(line)
    filler = [f"2024-05-01 10:00:{i % 60:02d} INFO http: GET /v2/orders/{i:032x} 200" for i in range(200)]
    live = "\n".join(filler + live_lines + DECOYS) + "\n"
    rotated = "\n".join(filler + rotated_lines[:4] + DECOYS) + "\n"
    (logs / "trading_system.log").write_text(live)
    (logs / "trading_system.log.1").write_text(rotated)
    data = "\n".join(rotated_lines[4:]).encode()
    (logs / "scheduler.log.2.gz").write_bytes(gzip.compress(data[:50]) + gzip.compress(data[50:]))
    return planted, live


def _everything_written(instance, result, data_dir, redis_client) -> str:
    parts = []
    for record in instance.all_logs(result.run_id):
        parts.append(record.to_json() if hasattr(record, "to_json") else repr(record))
    for path in (data_dir / "reports").rglob("*"):
        if path.is_file():
            parts.append(path.read_text())
    state = data_dir / "state"
    if state.exists():
        for path in state.rglob("*"):
            if path.is_file():
                parts.append(path.read_text(errors="replace"))
    for key in redis_client.keys("*"):
        kind = redis_client.type(key)
        if kind == b"string":
            parts.append(redis_client.get(key).decode(errors="replace"))
        elif kind == b"list":
            parts.extend(v.decode(errors="replace") for v in redis_client.lrange(key, 0, -1))
    return "\n".join(parts)


def test_audit_finds_masks_redacts_alerts_and_fails(tmp_path, data_dir, make_resources, redis_client):
    planted, live_text = _plant(data_dir, random.Random(5))
    (data_dir / ".env").write_text("ALPACA_API_KEY=x\n")
    os.chmod(data_dir / ".env", 0o644)
    config = write_config(tmp_path, data_dir, security={"service_ports": UNUSED_PORTS, "api_keys": [{"name": "alpaca_paper", "created": "2020-01-01"}]})
    with dg.instance_for_test() as instance:
        result = AUDIT_JOB.execute_in_process(
            resources=make_resources(config=config),
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {"security_audit_report": {"config": {"redact": True, "fix": True}}}},
        )
        assert not result.success  # critical findings fail the run
        failure = [e for e in result.all_events if e.is_step_failure]
        assert failure and failure[0].step_key == "security_audit_report"
        # the failed audit is still a materialization: critical findings plotted over time
        (materialization,) = instance.fetch_materializations(dg.AssetKey("security_audit_report"), limit=10).records
        assert materialization.asset_materialization.metadata["critical_findings"].value > 0

        secrets = latest_audit_report(data_dir)["secrets"]
        found = {(f["rule"], f["masked"]) for f in secrets["findings"]}
        for rule_id, value, _ in planted:
            assert (rule_id, findings.mask(value)) in found, rule_id
        assert len(secrets["findings"]) == len(planted)  # no decoy reported
        assert secrets["errors"] == []

        # redaction: live log untouched, rotated ones masked
        assert (data_dir / "logs" / "trading_system.log").read_text() == live_text
        rotated_gz_text = gzip.decompress((data_dir / "logs" / "scheduler.log.2.gz").read_bytes()).decode()
        rotated_text = (data_dir / "logs" / "trading_system.log.1").read_text() + rotated_gz_text
        assert sum(r["secrets_masked"] for r in secrets["redactions"] if r["done"]) == sum(1 for i in range(len(planted)) if i % 2 == 0)
        for i, (_, value, _) in enumerate(planted):
            if i % 2 == 0:
                assert value not in rotated_text

        # permissions fixed
        assert os.stat(data_dir / ".env").st_mode & 0o777 == 0o600

        # reports: JSON and valid SARIF
        reports = sorted((data_dir / "reports" / "security").iterdir())
        sarif = json.loads(next(p for p in reports if p.suffix == ".sarif").read_text())
        assert validate_sarif(sarif) == []
        assert {r["ruleId"] for r in sarif["runs"][0]["results"]} >= {"aws-access-key-id", "api-key"}
        report = json.loads(next(p for p in reports if p.suffix == ".json").read_text())
        assert report["status"] == "failed" and report["critical_by_part"]["secrets"] == len(planted)
        assert all(os.stat(p).st_mode & 0o077 == 0 for p in reports)

        # alert sent, result published
        alerts = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
        assert "security:secrets" in {a["key"] for a in alerts}
        published = json.loads(redis_client.get("maintenance:result:security_audit"))
        assert published["status"] == "failed" and published["run_id"] == result.run_id

        # the masked value is all that appears anywhere
        everything = _everything_written(instance, result, data_dir, redis_client)
        # the search does see metadata, reports and alerts (fingerprints are in all of them)
        assert findings.fingerprint(planted[0][0], planted[0][1])[:12] in everything
        for _, value, _ in planted:
            assert value not in everything
            for piece in value.split("\\n"):
                if len(piece) >= 12:
                    assert piece not in everything


def test_baseline_then_clean_run_succeeds(tmp_path, data_dir, make_resources, redis_client):
    planted, _ = _plant(data_dir, random.Random(9))
    config = write_config(tmp_path, data_dir, security={"service_ports": UNUSED_PORTS})
    os.chmod(config, 0o600)
    for path in (data_dir / "logs").iterdir():
        os.chmod(path, 0o600)
    with dg.instance_for_test() as instance:
        first = AUDIT_JOB.execute_in_process(
            resources=make_resources(config=config), instance=instance, raise_on_error=False,
            run_config={"ops": {"security_audit_report": {"config": {"update_baseline": True}}}},
        )
        baseline = json.loads((data_dir / "state" / "security_baseline.json").read_text())
        assert len(baseline["fingerprints"]) == len(planted)
        assert first.success, [e.message for e in first.all_events if e.is_failure]
        second = AUDIT_JOB.execute_in_process(resources=make_resources(config=config), instance=instance, raise_on_error=False)
        assert second.success
        secrets = latest_audit_report(data_dir)["secrets"]
        assert secrets["active"] == 0 and secrets["baselined"] == len(planted)
        # a new secret is not covered by the baseline
        new_line = planted_lines(random.Random(99))[2][2]
        with open(data_dir / "logs" / "trading_system.log", "a") as handle:
            handle.write(new_line + "\n")
        third = AUDIT_JOB.execute_in_process(resources=make_resources(config=config), instance=instance, raise_on_error=False)
        assert not third.success
        assert latest_audit_report(data_dir)["secrets"]["active"] == 1


def test_dry_run_changes_nothing(tmp_path, data_dir, make_resources):
    _plant(data_dir, random.Random(4))
    before = {p.name: p.read_bytes() for p in (data_dir / "logs").iterdir()}
    (data_dir / ".env").write_text("X=1\n")
    os.chmod(data_dir / ".env", 0o644)
    config = write_config(tmp_path, data_dir, security={"service_ports": UNUSED_PORTS, "redact": True, "fix_permissions": True})
    with dg.instance_for_test() as instance:
        AUDIT_JOB.execute_in_process(
            resources=make_resources(config=config), instance=instance, raise_on_error=False,
            run_config=dry_run_config(AUDIT_JOB),
        )
        # a dry run records its plan: no materialization, an observation naming what it would change
        assert instance.fetch_materializations(dg.AssetKey("security_audit_report"), limit=1).records == []
        (observation,) = instance.fetch_observations(dg.AssetKey("security_audit_report"), limit=10).records
        assert observation.asset_observation.metadata["would_fix_permissions"].value >= 1
    report = latest_audit_report(data_dir)
    secrets = report["secrets"]
    assert any(r["secrets_masked"] for r in secrets["redactions"]) and not any(r["done"] for r in secrets["redactions"])
    assert {p.name: p.read_bytes() for p in (data_dir / "logs").iterdir()} == before
    assert os.stat(data_dir / ".env").st_mode & 0o777 == 0o644
    fixes = report["permissions"]["fixes"]
    assert any(f["path"].endswith(".env") and f["new_mode"] == "0600" and not f["applied"] for f in fixes)


def test_schedule_and_definitions():
    assert security_audit_schedule.cron_schedule == "0 4 * * 0"
    assert security_audit_schedule.execution_timezone == "America/New_York"
    assert security_audit_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert security_audit_job.tags["maintenance/task"] == "security_audit"
    assert all_defs.resolve_job_def("security_audit_job").tags["maintenance/task"] == "security_audit"
    from trading_maintenance.tasks import resolve_task

    assert resolve_task("security_audit").job_name == security_audit_job.name


def test_cli_config_keys_and_dry_run_reach_the_audit_asset():
    assert op_config_from_pairs(AUDIT_JOB, ["redact=true", "fix=false", "update_baseline=true"]) == {
        "ops": {"security_audit_report": {"config": {"redact": True, "fix": False, "update_baseline": True}}}
    }
    assert dry_run_config(AUDIT_JOB) == {"ops": {"security_audit_report": {"config": {"dry_run": True}}}}
    with pytest.raises(OpConfigError, match="scan_log_secrets.redact"):
        op_config_from_pairs(AUDIT_JOB, ["scan_log_secrets.redact=true"])
