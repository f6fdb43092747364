"""Planted secrets and look-alike decoys shared by the tests and the benchmark (all fake)."""

import base64
import json
import random
import string


def rand(chars: str, n: int, rng: random.Random) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


UP = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits


def pem_body(rng: random.Random, lines: int = 6) -> list[str]:
    return [base64.b64encode(bytes(rng.getrandbits(8) for _ in range(48))).decode() for _ in range(lines)]


def jwt(rng: random.Random) -> str:
    def b64(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': rand(ALNUM, 10, rng), 'exp': 1900000000})}.{rand(ALNUM + '-_', 43, rng)}"


def planted_lines(rng: random.Random) -> list[tuple[str, str, str]]:
    """(rule id, secret value, log line) for one of each kind of secret (single-line ones)."""
    key_id = "PK" + rand(UP, 18, rng)
    alpaca_secret = rand(ALNUM, 40, rng)
    aws_id = "AKIA" + rand(UP, 16, rng)
    aws_secret = rand(ALNUM + "/+", 40, rng)
    slack = f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-{rand(ALNUM, 24, rng)}"
    hook = f"T{rand(UP, 8, rng)}/B{rand(UP, 10, rng)}/{rand(ALNUM, 24, rng)}"
    gh = "ghp_" + rand(ALNUM, 36, rng)
    token = jwt(rng)
    pg_pw = rand(ALNUM, 14, rng)
    redis_pw = rand(ALNUM, 18, rng)
    api_key = rand(ALNUM, 32, rng)
    password = rand(ALNUM, 12, rng)
    bearer = rand(ALNUM, 40, rng)
    secret = rand(ALNUM, 28, rng)
    pem = "\\n".join(pem_body(rng))
    return [
        ("alpaca-key-id", key_id, f"2024-05-01 12:00:01 INFO trade_executor: using key {key_id} for paper account"),
        (
            "alpaca-secret-key",
            alpaca_secret,
            f'2024-05-01 12:00:02 DEBUG httpx: headers={{"APCA-API-KEY-ID": "{key_id[:2]}", "APCA-API-SECRET-KEY": "{alpaca_secret}"}}',
        ),
        ("aws-access-key-id", aws_id, f"2024-05-01 12:00:03 INFO backup: uploading with access key {aws_id}"),
        ("aws-secret-access-key", aws_secret, f"2024-05-01 12:00:04 DEBUG boto: aws_secret_access_key={aws_secret} region=us-east-1"),
        ("slack-token", slack, f'{{"ts":"2024-05-01T12:00:05Z","level":"debug","event":"slack_client","token":"{slack}"}}'),
        ("slack-webhook-url", hook, f"2024-05-01 12:00:06 INFO alerts: posting to https://hooks.slack.com/services/{hook}"),
        ("github-token", gh, f"2024-05-01 12:00:07 WARNING deploy: git clone https://github.com/x/y using {gh}"),
        ("jwt", token, f'2024-05-01 12:00:08 INFO api: session={token} user=ops'),
        ("url-password", pg_pw, f"2024-05-01 12:00:09 ERROR db: could not connect to postgresql://trader:{pg_pw}@db.internal:5432/trading"),
        ("url-password", redis_pw, f"2024-05-01 12:00:10 ERROR cache: redis://:{redis_pw}@10.0.0.7:6379/0 refused"),
        ("generic-secret", api_key, f'2024-05-01 12:00:11 INFO data_collector: GET https://api.example.com/v1/quotes?symbol=AAPL&api_key={api_key} 200'),
        ("generic-secret", password, f"2024-05-01 12:00:12 DEBUG settings: smtp_password={password} host=mail"),
        ("authorization-header", bearer, f"2024-05-01 12:00:13 DEBUG httpx: Authorization: Bearer {bearer}"),
        ("generic-secret", secret, f'{{"ts":"2024-05-01T12:00:14Z","event":"config_loaded","client_secret": "{secret}"}}'),
        ("private-key", pem, f'{{"event":"key_loaded","pem":"-----BEGIN RSA PRIVATE KEY-----\\n{pem}\\n-----END RSA PRIVATE KEY-----"}}'),
    ]


DECOYS = [
    "2024-05-01 12:00:20 INFO docs: example key AKIAIOSFODNN7EXAMPLE from the AWS guide",
    "2024-05-01 12:00:21 INFO docs: aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "2024-05-01 12:00:22 INFO slack: token xoxb-REDACTED configured",
    "2024-05-01 12:00:23 INFO data_collector: GET /v1/quotes?symbol=AAPL&api_key=<redacted> 200",
    "2024-05-01 12:00:24 INFO alerts: webhook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "-----BEGIN PUBLIC KEY-----",
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmwIDAQAB",
    "-----END PUBLIC KEY-----",
    '{"event":"tls","cert":"-----BEGIN CERTIFICATE-----\\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\\n-----END CERTIFICATE-----"}',
    "2024-05-01 12:00:25 INFO auth: jwt.io sample "
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "2024-05-01 12:00:26 INFO cache: connected to redis://localhost:6379/0",
    "2024-05-01 12:00:27 INFO db: connected to postgresql://trader@db.internal:5432/trading",
    "2024-05-01 12:00:28 INFO db: DATABASE_URL=postgresql://user:password@localhost:5432/trading (documentation default)",
    "2024-05-01 12:00:29 INFO llm: token_count=1234 max_tokens=4096",
    "2024-05-01 12:00:30 INFO settings: password_min_length=12 password_reset=true",
    '{"event":"config","api_key":"${ALPACA_API_KEY}","secret_key":"***"}',
    "2024-05-01 12:00:31 INFO auth: Authorization: Bearer <token>",
    "2024-05-01 12:00:32 INFO http: GET /v2/orders/3f9c2a7e1b4d5c6a8f0e9d7c2b1a3f4e?limit=50 200 rid=9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "2024-05-01 12:00:33 INFO gh: token ghp_short not a token",
    "2024-05-01 12:00:34 INFO order: client_order_id=PKG-ORDER-000123 symbol=PLTR",
    "2024-05-01 12:00:35 INFO cfg: secret=changeme token=xxxxxxxxxxxxxxxx password=********",
    "2024-05-01 12:00:36 INFO trace: key=value cache_key=price_cache:AAPL:1min",
]


def latest_audit_report(data_dir) -> dict:
    """The JSON report the latest security audit wrote (its secrets, permissions, keys and exposure parts)."""
    import json

    reports = sorted((data_dir / "reports" / "security").glob("security_audit_*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return json.loads(reports[-1].read_text())
