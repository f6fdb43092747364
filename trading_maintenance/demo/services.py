"""Stand-ins for the platform's services on the demo machine: each answers GET /health like the real ones."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


def _handler(name: str):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") != "/health":
                self.send_error(404)
                return
            body = json.dumps({"status": "healthy", "service": name}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            return

    return Handler


def start_demo_services(endpoints: dict[str, str], busy: list[str] | None = None) -> list[ThreadingHTTPServer]:
    """Serve /health for every endpoint on a loopback host; returns the running servers.

    An endpoint whose port is already taken (say, by the real service or another demo) is left to
    whatever answers there and named in `busy`.
    """
    import errno

    servers = []
    for name, url in endpoints.items():
        parsed = urlparse(url)
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"demo services only bind loopback addresses; {name} is {parsed.hostname}")
        try:
            server = ThreadingHTTPServer((parsed.hostname, parsed.port or 80), _handler(name))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or busy is None:
                raise
            busy.append(url)
            continue
        threading.Thread(target=server.serve_forever, daemon=True, name=f"demo-{name}").start()
        servers.append(server)
    return servers
