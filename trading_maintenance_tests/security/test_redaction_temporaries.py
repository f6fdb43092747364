"""Redaction temporaries name their writer; the next audit removes a crashed one's, never a live one's."""

import os
import subprocess
import sys
import time

import dagster as dg

from trading_maintenance.core.security import targets
from trading_maintenance.core.security.findings import fingerprint
from trading_maintenance.definitions import defs
from trading_maintenance_tests.conftest import write_config
from trading_maintenance_tests.security.samples import latest_audit_report

SECRET = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
UNUSED_PORTS = {"redis": 1, "postgresql": 2, "dagster_webserver": 4}
# redact_file in a process that dies right before the rename: its temporary is all that is left
CRASHING_REDACTION = (
    "import os, sys\n"
    "from trading_maintenance.core.security import redaction\n"
    "redaction.os.replace = lambda *a: os._exit(3)\n"
    "redaction.redact_file(sys.argv[1], {sys.argv[2]}, dry_run=False)\n"
)


def _audit(tmp_path, data_dir, make_resources, dry_run: bool) -> dict:
    config = write_config(tmp_path, data_dir, security={"service_ports": UNUSED_PORTS})
    with dg.instance_for_test() as instance:
        defs.resolve_job_def("security_audit_job").execute_in_process(
            resources=make_resources(config=config), instance=instance, raise_on_error=False,
            run_config={"ops": {"security_audit_report": {"config": {"dry_run": dry_run, "redact": False}}}},
        )
    return latest_audit_report(data_dir)["secrets"]


def test_a_crashed_redaction_leaves_a_temporary_the_next_audit_removes(tmp_path, data_dir, make_resources):
    logs = data_dir / "logs"
    logs.mkdir()
    rotated = logs / "trading_system.log.1"
    original = f"start\ntoken in a header: {SECRET}\nend\n".encode()
    rotated.write_bytes(original)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_REDACTION, str(rotated), fingerprint("github-token", SECRET)],
        capture_output=True, text=True,
    )
    assert crashed.returncode == 3, crashed.stderr
    leftover = logs / f".{rotated.name}.redact.{_crashed_pid(logs)}.tmp"
    assert leftover.exists() and SECRET.encode() not in leftover.read_bytes()
    assert rotated.read_bytes() == original

    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_temp = logs / f".scheduler.log.2.redact.{live_writer.pid}.tmp"
        live_temp.write_bytes(b"being written")
        fresh_unnamed = logs / ".strategy.log.3.redact.tmp"  # an earlier version's: no process to ask
        fresh_unnamed.write_bytes(b"maybe being written")
        old_unnamed = logs / ".risk.log.4.redact.tmp"
        old_unnamed.write_bytes(b"abandoned long ago")
        two_days_ago = time.time() - 2 * 86400
        os.utime(old_unnamed, (two_days_ago, two_days_ago))

        dry = _audit(tmp_path, data_dir, make_resources, dry_run=True)
        assert sorted(os.path.basename(t["path"]) for t in dry["stale_temporaries"]) == sorted([leftover.name, old_unnamed.name])
        assert leftover.exists() and old_unnamed.exists()  # a dry run changes nothing

        done = _audit(tmp_path, data_dir, make_resources, dry_run=False)
        assert all(t["removed"] and not t["error"] for t in done["stale_temporaries"])
        assert not leftover.exists() and not old_unnamed.exists()
        assert live_temp.read_bytes() == b"being written" and fresh_unnamed.exists()
        assert rotated.read_bytes() == original
        # temporaries are never scanned as logs
        assert done["files_scanned"] == 1 and [f["path"] for f in done["findings"]] == ["logs/trading_system.log.1"]
    finally:
        live_writer.kill()
        live_writer.wait()


def _crashed_pid(folder) -> int:
    (name,) = [n for n in os.listdir(folder) if n.endswith(".tmp")]
    return int(name.rsplit(".", 2)[1])


def test_temporaries_are_never_logs_even_compressed_by_mistake():
    for name in (".app.log.1.redact.123.tmp", ".app.log.1.redact.tmp", ".app.log.2.gz.redact.9.tmp.gz", ".app.log.1.redact.7.tmp.gz.gz"):
        assert targets.is_temporary(name), name
        assert not targets.is_rotated(name), name
    assert targets.is_rotated("app.log.2.gz") and not targets.is_temporary("app.log.2.gz")


def test_compressed_temporaries_are_not_scanned(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log.1").write_text("x\n")
    (logs / ".app.log.2.gz.redact.9.tmp.gz").write_bytes(b"")
    assert [rel for _, rel in targets.iter_scan_files(tmp_path, ["logs"], [])] == ["logs/app.log.1"]
