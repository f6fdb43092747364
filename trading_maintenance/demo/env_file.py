"""Write the demo broker's URL and keys into the project's `.env` (Dagster's own convention), so every
command in the user's shell (CLI, API, `dagster dev`, `dg`) reaches the demo broker, not the real one.

Other lines of the file are kept. A `.env` that already names another broker is left alone (exit 3).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dotenv import dotenv_values

from trading_maintenance.core.common.atomic import atomic_write_text

DEFAULT_DEMO_BROKER_PORT = 8780
PORT_VARIABLE = "DEMO_BROKER_PORT"


def demo_broker_env(port: int = DEFAULT_DEMO_BROKER_PORT) -> dict[str, str]:
    return {
        "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
        "ALPACA_API_KEY": "demo-key-id",
        "ALPACA_SECRET_KEY": "demo-secret-key",
    }


DEMO_BROKER_ENV = demo_broker_env()
EXIT_OTHER_BROKER = 3
EXIT_BAD_PORT = 2
HEADER = "# written by scripts/start: the demo broker (delete these lines to use a real one)"


class OtherBrokerConfigured(Exception):
    pass


def write_demo_env(path: Path, port: int = DEFAULT_DEMO_BROKER_PORT) -> None:
    wanted = demo_broker_env(port)
    existing_text = path.read_text() if path.exists() else ""
    existing = dotenv_values(path) if path.exists() else {}
    configured = existing.get("ALPACA_BASE_URL")
    if configured and configured != wanted["ALPACA_BASE_URL"]:
        raise OtherBrokerConfigured(f"{path} names another broker (ALPACA_BASE_URL={configured}); demo broker not configured")
    kept = [line for line in existing_text.splitlines()
            if line.strip() != HEADER and line.split("=", 1)[0].strip().removeprefix("export ").strip() not in wanted]
    lines = kept + [HEADER] + [f"{name}={value}" for name, value in wanted.items()]
    atomic_write_text(path, "\n".join(lines) + "\n", mode=0o600)  # it holds keys


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".env")
    chosen_port = os.environ.get(PORT_VARIABLE, "")
    if chosen_port and not (chosen_port.isdigit() and 0 < int(chosen_port) < 65536):
        print(f"{PORT_VARIABLE}={chosen_port!r} is not a port number (1-65535)", file=sys.stderr)
        return EXIT_BAD_PORT
    try:
        write_demo_env(path, int(chosen_port) if chosen_port else DEFAULT_DEMO_BROKER_PORT)
    except OtherBrokerConfigured as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_OTHER_BROKER
    print(f"demo broker settings written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
