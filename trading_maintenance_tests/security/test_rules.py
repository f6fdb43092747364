"""Every rule: true-positive and false-positive samples (as gitleaks keeps for each rule)."""

import random

import pytest

from trading_maintenance.core.security.rules import RULES, RULES_BY_ID, combined_prefilter, is_placeholder, shannon_entropy
from trading_maintenance.core.security.scan import match_text
from trading_maintenance_tests.security.samples import DECOYS, planted_lines

PLANTED = planted_lines(random.Random(7))

# rule id -> extra true positives (line, secret) and false positives (line)
EXTRA_TRUE = {
    "alpaca-key-id-header": [("APCA-API-KEY-ID: CK7Q2M9X4T1R8V6B3N5Z", "CK7Q2M9X4T1R8V6B3N5Z")],
    "alpaca-secret-key": [("ALPACA_SECRET_KEY=Zk3P9qR7sT1vW5xY8aB2cD4eF6gH0jK3mN5pQ7rS", "Zk3P9qR7sT1vW5xY8aB2cD4eF6gH0jK3mN5pQ7rS")],
    "aws-access-key-id": [('"AccessKeyId": "ASIAQ3RZ7T2M5X8K1V4N"', "ASIAQ3RZ7T2M5X8K1V4N")],
    "github-token": [("token github_pat_11ABCDEFG0" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5kL7nP9rS1tV3xZ5aC7eG9iK1mO3qU5wY7", None)],
    "slack-token": [("SLACK_BOT_TOKEN xoxp-2048123456-4096123456-8192123456-a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", None)],
    "authorization-header": [('"Authorization": "Basic dHJhZGVyOnMzY3IzdFBhc3N3b3JkMTIz"', "dHJhZGVyOnMzY3IzdFBhc3N3b3JkMTIz")],
    "generic-secret": [
        ("X-API-Key: 7f3k9Q2m5T8x1R4v6B0n", "7f3k9Q2m5T8x1R4v6B0n"),
        ("refresh_token=Q9w8E7r6T5y4U3i2O1p0 next=1", "Q9w8E7r6T5y4U3i2O1p0"),
        ('{"db_password": "Tr4d1ng!"}', "Tr4d1ng!"),
    ],
    "url-password": [("amqp://svc:Kx9!pQ2z@rabbit:5672/", "Kx9!pQ2z")],
    "private-key": [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
          "QyNTUxOQAAACDhK3f9Q2m5T8x1R4v6B0nZk3P9qR7sT1vW5xY8aB2cD4eF6gH0jK3mN5p"]) + "\n-----END OPENSSH PRIVATE KEY-----", None)
    ],
}
EXTRA_FALSE = {
    "alpaca-key-id": ["PKAAAAAAAAAAAAAAAAAA", "BREAKFASTCLUBMEMBERS1", "PKGX1234"],
    "alpaca-key-id-header": ["APCA-API-KEY-ID: <your key id>", "APCA-API-KEY-ID: $ALPACA_API_KEY"],
    "alpaca-secret-key": ["APCA-API-SECRET-KEY: ****", "ALPACA_SECRET_KEY=your_secret_key_here_xxxxxxxxxxxxxxxxxxx"],
    "aws-access-key-id": ["AKIAIOSFODNN7EXAMPLE", "AKIA_NOT_A_KEY"],
    "aws-secret-access-key": ["aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key=${AWS_SECRET}"],
    "slack-token": ["xoxb-REDACTED", "xoxb-your-token", "xoxp-1234"],
    "slack-webhook-url": ["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "https://hooks.slack.com/services/"],
    "github-token": ["ghp_short", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
    "jwt": [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhYmNkZWZnaCJ9.aaaaaaaabbbbbbbbcccc",  # alg none
    ],
    "url-password": ["redis://localhost:6379/0", "postgresql://user:password@localhost/db", "https://user@example.com/x", "redis://:***@host:6379"],
    "authorization-header": ["Authorization: Bearer <token>", "Authorization: Bearer ${TOKEN}"],
    "generic-secret": [
        "api_key=<redacted>", "token_count=1234", "password_min_length=12", "secret=changeme", "api_key=abc", "token=1700000000", "max_tokens=4096"
    ],
    "private-key": [
        "-----BEGIN PUBLIC KEY-----\n"
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\n"
        "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJRTESMBAGA1UEChMJQmFsdGltb3JlMRMw\n-----END CERTIFICATE-----",
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
    ],
}


def _found(text: str) -> list[tuple[str, str]]:
    return [(m.rule.id, m.value) for m in match_text(text)]


@pytest.mark.parametrize("rule_id,value,line", PLANTED, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(PLANTED)])
def test_planted_secret_is_found_by_its_rule(rule_id, value, line):
    found = _found(line)
    assert (rule_id, value) in found, found


@pytest.mark.parametrize("rule_id", sorted(EXTRA_TRUE))
def test_extra_true_positives(rule_id):
    for line, value in EXTRA_TRUE[rule_id]:
        found = _found(line)
        assert any(r == rule_id and (value is None or v == value) for r, v in found), (line, found)


@pytest.mark.parametrize("rule_id", sorted(EXTRA_FALSE))
def test_false_positive_samples_do_not_match(rule_id):
    for line in EXTRA_FALSE[rule_id]:
        assert _found(line) == [], line


def test_every_rule_has_true_and_false_samples():
    planted_rules = {r for r, _, _ in PLANTED} | set(EXTRA_TRUE)
    assert {r.id for r in RULES} <= planted_rules
    assert {r.id for r in RULES} <= set(EXTRA_FALSE)


@pytest.mark.parametrize("line", DECOYS)
def test_decoys_do_not_match(line):
    assert _found(line) == []


def test_prefilter_admits_every_planted_line():
    import polars as pl

    lines = [line for _, _, line in PLANTED] + [sample for samples in EXTRA_TRUE.values() for sample, _ in samples]
    assert pl.Series(lines).str.contains(combined_prefilter()).all()


def test_helpers():
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == 2
    assert is_placeholder("<redacted>") and is_placeholder("xoxb-REDACTED") and not is_placeholder("Q9w8E7r6T5y4")
    assert RULES_BY_ID["jwt"].multiline is False and RULES_BY_ID["private-key"].multiline
