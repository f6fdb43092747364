"""Scanning files: gzip members, last line without newline, baseline, allow markers, redaction."""

import gzip
import json
import os
import random

from trading_maintenance.core.security import baseline, findings, redaction, scan, targets
from trading_maintenance_tests.security.samples import DECOYS, planted_lines

PLANTED = planted_lines(random.Random(11))


def _values_found(result):
    return {(f.rule, f.line) for f in result.findings}


def test_scan_finds_planted_and_ignores_decoys_with_small_blocks(tmp_path):
    lines = []
    for i in range(400):
        lines.append(f"2024-05-01 10:{i % 60:02d}:00 INFO http: GET /v2/orders/{i:032x} 200 rid={i:040x}")
    expected = []
    for rule_id, _, line in PLANTED:
        lines.append(line)
        expected.append((rule_id, len(lines)))
        lines.extend(DECOYS)
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n")
    # small blocks: block boundaries fall everywhere, results must not change
    for block_size in (4096, 1 << 20):
        result = scan.SecretScanner(block_size=block_size).scan_file(path)
        assert result.error == ""
        assert sorted((f.rule, f.line) for f in result.findings) == sorted(expected)
        assert result.lines == len(lines)


def test_secret_split_across_gzip_member_boundary_and_last_line_without_newline(tmp_path):
    rule_id, value, line = PLANTED[3]  # aws secret access key
    _, last_value, last_line = PLANTED[0]  # alpaca key id, on the final line without newline
    text = ("filler line\n" * 50 + line + "\n" + "more\n" * 10 + last_line).encode()
    cut = text.index(value.encode()) + len(value) // 2  # member boundary inside the secret
    path = tmp_path / "trading_system.log.2.gz"
    path.write_bytes(gzip.compress(text[:cut]) + gzip.compress(text[cut:]))
    result = scan.SecretScanner().scan_file(path)
    assert result.error == ""
    got = {(f.rule, f.line) for f in result.findings}
    assert (rule_id, 51) in got
    assert ("alpaca-key-id", 62) in got
    assert result.lines == 62
    # only masked values in the findings
    blob = json.dumps([f.as_dict() for f in result.findings])
    assert value not in blob and last_value not in blob
    assert any(f.masked == findings.mask(value) for f in result.findings)


def test_truncated_gzip_is_reported_not_fatal(tmp_path):
    _, _, line = PLANTED[2]
    rng = random.Random(3)
    filler = "".join(f"{rng.getrandbits(128):032x}\n" for _ in range(5000))
    data = gzip.compress((line + "\n" + filler).encode())
    path = tmp_path / "broken.log.1.gz"
    path.write_bytes(data[: len(data) // 2])
    result = scan.SecretScanner().scan_file(path)
    assert result.error
    assert [f.rule for f in result.findings] == ["aws-access-key-id"]


def test_binary_file_skipped(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\0\1\2" + PLANTED[2][2].encode())
    assert scan.SecretScanner().scan_file(path).skipped == "binary"


def test_invalid_utf8_does_not_hide_a_secret(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_bytes(b"bad \xff\xfe bytes\n" + PLANTED[2][2].encode() + b"\n")
    result = scan.SecretScanner().scan_file(path)
    assert [(f.rule, f.line) for f in result.findings] == [("aws-access-key-id", 2)]


def test_inline_allow_marker_and_path_allowlist(tmp_path):
    root = tmp_path
    (root / "logs").mkdir()
    (root / "logs" / "a.log").write_text(PLANTED[2][2] + "  # gitleaks:allow\n" + PLANTED[6][2] + "\n")
    (root / "logs" / "fixtures").mkdir()
    (root / "logs" / "fixtures" / "sample.log").write_text(PLANTED[6][2] + "\n")
    files = list(targets.iter_scan_files(root, ["logs"], ["logs/fixtures/**"]))
    assert [rel for _, rel in files] == ["logs/a.log"]
    result = scan.SecretScanner().scan_file(files[0][0], files[0][1])
    assert {(f.rule, f.status) for f in result.findings} == {("aws-access-key-id", "allowed"), ("github-token", "active")}


def test_baseline_suppresses_exactly_the_accepted_findings(tmp_path):
    path = tmp_path / "app.log"
    path.write_text("\n".join(line for _, _, line in PLANTED[:6]) + "\n")
    found = scan.SecretScanner().scan_file(path).findings
    assert len(found) == 6
    accepted = found[1:3]
    baseline_path = tmp_path / "baseline.json"
    baseline_path.write_text(json.dumps(baseline.baseline_document(accepted)))
    prints, error = baseline.load_baseline(baseline_path)
    assert error == "" and prints == {f.fingerprint for f in accepted}
    judged = baseline.apply_baseline(found, prints)
    assert [f.status for f in judged] == ["active", "baselined", "baselined", "active", "active", "active"]
    # the same secret in another file / line is the same accepted fingerprint
    other = tmp_path / "other.log.1"
    other.write_text("noise\n" + PLANTED[1][2] + "\n")
    again = baseline.apply_baseline(scan.SecretScanner().scan_file(other).findings, prints)
    assert [f.status for f in again] == ["baselined"]
    # a corrupt baseline is reported, and accepts nothing
    baseline_path.write_text("{not json")
    assert baseline.load_baseline(baseline_path)[0] == set() and baseline.load_baseline(baseline_path)[1]


def test_redaction_rotated_masked_byte_identical_live_untouched(tmp_path):
    body = "".join(f"2024-05-01 09:00:{i:02d} INFO ünïcode line {i} \t tabs  \r\n" for i in range(20)).encode()
    secrets = [PLANTED[3], PLANTED[8], PLANTED[14]]  # aws secret, url password, escaped-newline PEM
    original = body + b"".join(line.encode() + b"\n" for _, _, line in secrets) + b"\xff raw byte line\n" + b"tail without newline"
    rotated = tmp_path / "trading_system.log.1"
    live = tmp_path / "trading_system.log"
    rotated.write_bytes(original)
    live.write_bytes(original)
    os.chmod(rotated, 0o640)
    prints = {f.fingerprint for f in scan.SecretScanner().scan_file(rotated).findings}
    assert len(prints) == 3

    dry = redaction.redact_file(rotated, prints, dry_run=True)
    assert dry.secrets_masked == 3 and not dry.done and rotated.read_bytes() == original

    refused = redaction.redact_file(live, prints, dry_run=False)
    assert refused.error and not refused.done and live.read_bytes() == original

    done = redaction.redact_file(rotated, prints, dry_run=False)
    assert done.done and done.secrets_masked == 3 and done.error == ""
    new = rotated.read_bytes()
    expected = original
    for _, value, _ in secrets:
        assert value.encode() in expected
        expected = expected.replace(value.encode(), findings.mask(value).encode())
        assert value.encode() not in new
    assert new == expected  # everything but the secrets byte-identical
    assert oct(os.stat(rotated).st_mode & 0o777) == oct(0o640)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert scan.SecretScanner().scan_file(rotated).findings == []  # the masked form never re-matches


def test_redaction_of_gzipped_rotated_log(tmp_path):
    _, value, line = PLANTED[9]
    text = ("a\n" * 100 + line + "\n" + "b\n" * 100).encode()
    path = tmp_path / "scheduler.log.3.gz"
    path.write_bytes(gzip.compress(text))
    prints = {f.fingerprint for f in scan.SecretScanner().scan_file(path).findings}
    assert redaction.redact_file(path, prints, dry_run=False).done
    assert gzip.decompress(path.read_bytes()) == text.replace(value.encode(), findings.mask(value).encode())


def test_rotation_names():
    for name in ("a.log.1", "a.log.2.gz", "a-20240501.log.gz", "a.log.20240501", "a.log.old", "x.gz"):
        assert targets.is_rotated(name), name
    for name in ("a.log", "trading_system.log", "error.log"):
        assert not targets.is_rotated(name), name


def test_scan_files_in_threads_equals_one_at_a_time_in_order(tmp_path):
    """The audit scans several files at once: every engine scan has its own scratch (Hyperscan refuses a
    shared one in use), and the results are those of scanning each file alone, in the listing's order."""
    rng = random.Random(5)
    items = []
    for n in range(12):
        lines = [f"2024-05-01 10:00:{i % 60:02d} INFO worker-{n}: tick {i:040x}" for i in range(rng.randint(2000, 6000))]
        for _, _, line in rng.sample(PLANTED, 4):
            lines.insert(rng.randrange(len(lines)), line)
        lines.extend(DECOYS)
        path = tmp_path / f"w{n:02d}.log"
        path.write_text("\n".join(lines) + "\n")
        items.append((path, f"logs/w{n:02d}.log"))
    scanner = scan.SecretScanner(block_size=8192)
    alone = [scanner.scan_file(path, rel) for path, rel in items]
    for threads in (1, 3):
        together = list(scanner.scan_files(items, threads=threads))
        assert [r.path for r in together] == [rel for _, rel in items]
        assert [sorted((f.rule, f.line, f.fingerprint) for f in r.findings) for r in together] == \
               [sorted((f.rule, f.line, f.fingerprint) for f in r.findings) for r in alone]
        assert all(r.findings for r in together) and all(r.error == "" for r in together)
