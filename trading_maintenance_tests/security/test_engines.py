"""The candidate search: Hyperscan and its fallback give the scanner exactly the same findings."""

import random

import pytest

from trading_maintenance.core.security import engine as engine_module
from trading_maintenance.core.security.findings import fingerprint
from trading_maintenance.core.security.reading import LONG_LINE_PIECE, LONG_LINE_WINDOW
from trading_maintenance.core.security.scan import SecretScanner
from trading_maintenance_tests.security.samples import DECOYS, planted_lines

ENGINES = ("hyperscan", "regex")
AWS_ID = "AKIAQWERTYUIOP123456"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK = "xoxb-12345678901-10987654321-a1B2c3D4e5F6g7H8i9J0k1L2"


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    """Each test runs with Hyperscan and again as if its wheel were missing."""
    if request.param == "regex":
        monkeypatch.setattr(engine_module, "hyperscan", None)
    elif engine_module.hyperscan is None:
        pytest.skip("no Hyperscan wheel for this platform")
    return request.param


def _findings(path, engine_name, **kwargs):
    scanner = SecretScanner(**kwargs)
    assert scanner.engine.name == engine_name
    result = scanner.scan_file(path)
    assert result.error == ""
    return [(f.rule, f.line, f.column, f.fingerprint, f.status) for f in result.findings], result.lines


def test_hyperscan_is_the_engine_where_its_wheel_is_installed():
    assert engine_module.hyperscan is not None, "the hyperscan dependency is not installed"
    assert SecretScanner().engine.name == "hyperscan"


def test_planted_found_decoys_ignored_across_block_cuts(tmp_path, engine):
    rng = random.Random(21)
    lines, expected = [], []
    for round_ in range(3):
        for rule_id, value, line in planted_lines(random.Random(100 + round_)):
            lines.extend(f"2024-05-02 11:00:{i:02d} INFO GET /v2/orders/{rng.getrandbits(128):032x} 200" for i in range(rng.randint(0, 30)))
            lines.append(line)
            expected.append((rule_id, len(lines), fingerprint(rule_id, value)))
            lines.extend(DECOYS[rng.randrange(len(DECOYS))] for _ in range(2))
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n")
    for block_size in (4096, 1 << 20):  # cuts between blocks fall everywhere
        found, n_lines = _findings(path, engine, block_size=block_size)
        assert sorted((rule, line, fp) for rule, line, _, fp, _ in found) == sorted(expected)
        assert n_lines == len(lines)


def test_secrets_across_piece_and_window_cuts_of_a_long_line(tmp_path, engine):
    filler = (b"lorem ipsum dolor sit amet consectetur adipiscing elit " * 200000)[: 2 * LONG_LINE_PIECE + LONG_LINE_WINDOW]
    data = bytearray(filler)
    placed = {
        "aws-access-key-id": (LONG_LINE_PIECE - 7, AWS_ID),  # across the first cut between parts
        "github-token": (3 * LONG_LINE_WINDOW - 9, GITHUB),  # across a window cut inside a part
        "slack-token": (LONG_LINE_PIECE + 5 * LONG_LINE_WINDOW - 11, SLACK),  # a window cut in the second part
    }
    for offset, value in placed.values():
        data[offset : offset + len(value) + 2] = f" {value} ".encode()
    path = tmp_path / "one_line.log"
    path.write_bytes(bytes(data))
    found, n_lines = _findings(path, engine)
    assert n_lines == 1
    assert [(rule, line, column) for rule, line, column, _, _ in found] == [
        (rule, 1, offset + 2) for rule, (offset, _) in sorted(placed.items(), key=lambda kv: kv[1][0])
    ]


def test_configured_secrets_with_any_characters_are_found_literally(tmp_path, engine):
    configured = ["Grüße-geheim-42", "p@ss|(w)rd.*+?", "tab\tand space"]
    path = tmp_path / "app.log"
    path.write_bytes(
        "start\n"
        f"login ok password={configured[0]} for user\n"
        f"db said: {configured[1]}\n"
        "p@ss|wrd is not it\n"
        f"{configured[2]}!\n".encode()
    )
    found, _ = _findings(path, engine, known_secrets=configured)
    assert [(rule, line, column, fp) for rule, line, column, fp, _ in found] == [
        ("configured-secret", 2, 19, fingerprint("configured-secret", configured[0])),
        ("configured-secret", 3, 10, fingerprint("configured-secret", configured[1])),
        ("configured-secret", 5, 1, fingerprint("configured-secret", configured[2])),
    ]


def test_latin1_whitespace_around_an_assignment_is_a_candidate(tmp_path, engine):
    value = "Zq8xW3vN5bL2mK7pR4tY"
    # \x1c and \xa0 are whitespace to the validating rules: the candidate search must agree
    path = tmp_path / "app.log"
    path.write_bytes(b"noise\napi_token\x1c=" + value.encode() + b"\nclient_secret:\xa0" + value[::-1].encode() + b"\n")
    found, _ = _findings(path, engine)
    assert [(rule, line) for rule, line, *_ in found] == [("generic-secret", 2), ("generic-secret", 3)]


def test_both_engines_report_the_same_candidates():
    rules_patterns = [(0, r"(?i)token[\x22']?\s*[:=]"), (1, r"[PA]K[A-Z0-9]{18}"), (2, "gr\\xFC\\xDFe")]
    data = b"x token = 1\nTOKEN\xa0: 2\nPKABCDEFGHIJKLMNOPQR\ngr\xfc\xdfe\nnone here\n"
    regex = engine_module.RegexEngine([(i, engine_module.portable_pattern(p)) for i, p in rules_patterns])
    if engine_module.hyperscan is None:
        pytest.skip("no Hyperscan wheel for this platform")
    hs = engine_module.HyperscanEngine([(i, engine_module.portable_pattern(p)) for i, p in rules_patterns])

    def lines_hit(spans):
        return sorted({(data.count(b"\n", 0, start), rule) for start, _end, rule in spans})

    assert lines_hit(hs.spans(data)) == lines_hit(regex.spans(data)) == [(0, 0), (1, 0), (2, 1), (3, 2)]
