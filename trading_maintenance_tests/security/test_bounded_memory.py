"""A huge log without newlines is scanned and redacted in bounded memory, secrets across cuts included."""

import json
import subprocess
import sys
import textwrap

from trading_maintenance.core.security import reading
from trading_maintenance.core.security.findings import mask

MB = 1024 * 1024
FILE_SIZE = 400 * MB
PEAK_RSS_LIMIT = 300 * MB
SECRET_AT_CUT = "AKIAQWERTYUIOP123456"  # aws-access-key-id, across the first cut between pieces
SECRET_NEAR_END = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # github-token, across a window cut


def _write_log(path) -> tuple[int, int]:
    filler = (b"lorem ipsum dolor sit amet consectetur adipiscing elit " * 20000)[:MB]
    # A line without newlines is cut into LONG_LINE_PIECE parts, scanned in LONG_LINE_WINDOW windows.
    at_cut = reading.LONG_LINE_PIECE - 7
    near_end = FILE_SIZE - reading.LONG_LINE_WINDOW - 7
    with open(path, "wb") as handle:
        written = 0
        while written < FILE_SIZE:
            chunk = filler[: FILE_SIZE - written]
            handle.write(chunk)
            written += len(chunk)
        handle.seek(at_cut)
        handle.write(f" {SECRET_AT_CUT} ".encode())
        handle.seek(near_end)
        handle.write(f" {SECRET_NEAR_END} ".encode())
    return at_cut + 1, near_end + 1


CHILD = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    code = sys.argv[1]
    proc = subprocess.run([sys.executable, "-c", code, *sys.argv[2:]], capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr[-2000:], "peak": peak}))
    """
)
SCAN = (
    "import json, sys; from trading_maintenance.core.security.scan import SecretScanner; r = SecretScanner().scan_file(sys.argv[1]); "
    "print(json.dumps([[f.rule, f.line, f.column, f.fingerprint] for f in r.findings] + [r.lines, r.error]))"
)
REDACT = (
    "import json, sys; from trading_maintenance.core.security.redaction import redact_file; "
    "r = redact_file(sys.argv[1], set(json.loads(sys.argv[2])), dry_run=False); print(json.dumps([r.done, r.secrets_masked, r.error]))"
)


def _measured(code: str, *args: str) -> tuple[object, int]:
    report = json.loads(subprocess.run([sys.executable, "-c", CHILD, code, *args], capture_output=True, text=True, check=True).stdout)
    assert report["rc"] == 0, report["err"]
    return json.loads(report["out"]), report["peak"]


def test_scan_and_redaction_of_a_400_mb_line_stay_under_300_mb(tmp_path):
    path = tmp_path / "trading_system.log.1"
    at_cut, near_end = _write_log(path)  # byte offsets of the two secrets

    scanned, scan_peak = _measured(SCAN, str(path))
    *findings, lines, error = scanned
    assert error == "" and lines == 1
    assert [(rule, line, column) for rule, line, column, _ in findings] == [
        ("aws-access-key-id", 1, at_cut + 1),
        ("github-token", 1, near_end + 1),
    ]
    assert scan_peak < PEAK_RSS_LIMIT, f"scan peak RSS {scan_peak / MB:.0f} MB"

    prints = json.dumps([fp for *_, fp in findings])
    redacted, redact_peak = _measured(REDACT, str(path), prints)
    assert redacted == [True, 2, ""]
    assert redact_peak < PEAK_RSS_LIMIT, f"redaction peak RSS {redact_peak / MB:.0f} MB"

    with open(path, "rb") as handle:
        handle.seek(at_cut)
        assert handle.read(40).startswith(mask(SECRET_AT_CUT).encode())
        handle.seek(near_end - 100)  # earlier masks shortened the file a little
        tail = handle.read()
    assert SECRET_NEAR_END.encode() not in tail and mask(SECRET_NEAR_END).encode() in tail
    assert path.stat().st_size == FILE_SIZE - sum(len(v) - len(mask(v).encode()) for v in (SECRET_AT_CUT, SECRET_NEAR_END))
