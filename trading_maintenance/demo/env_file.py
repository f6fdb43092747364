"""Write the demo broker's URL and keys into the project's `.env` (Dagster's own convention), so every
command in the user's shell (CLI, API, `dagster dev`, `dg`) reaches the demo broker, not the real one.

Other lines of the file are kept. A `.env` that already names another broker is left alone (exit 3).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dotenv import dotenv_values

from trading_maintenance.core.common.atomic import atomic_write_text

DEMO_BROKER_ENV = {
    "ALPACA_BASE_URL": "http://127.0.0.1:8780",
    "ALPACA_API_KEY": "demo-key-id",
    "ALPACA_SECRET_KEY": "demo-secret-key",
}
EXIT_OTHER_BROKER = 3
HEADER = "# written by scripts/start: the demo broker (delete these lines to use a real one)"


class OtherBrokerConfigured(Exception):
    pass


def write_demo_env(path: Path) -> None:
    existing_text = path.read_text() if path.exists() else ""
    existing = dotenv_values(path) if path.exists() else {}
    configured = existing.get("ALPACA_BASE_URL")
    if configured and configured != DEMO_BROKER_ENV["ALPACA_BASE_URL"]:
        raise OtherBrokerConfigured(f"{path} names another broker (ALPACA_BASE_URL={configured}); demo broker not configured")
    kept = [line for line in existing_text.splitlines()
            if line.strip() != HEADER and line.split("=", 1)[0].strip().removeprefix("export ").strip() not in DEMO_BROKER_ENV]
    lines = kept + [HEADER] + [f"{name}={value}" for name, value in DEMO_BROKER_ENV.items()]
    atomic_write_text(path, "\n".join(lines) + "\n", mode=0o600)  # it holds keys


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".env")
    try:
        write_demo_env(path)
    except OtherBrokerConfigured as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_OTHER_BROKER
    print(f"demo broker settings written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
