"""A local HTTP server answering the documented Alpaca Trading API v2 read endpoints from a JSON state.

Used by the demo platform (`trading-maintenance demo broker`) and by the tests. It speaks real HTTP,
so the product's `AlpacaClient` talks to it exactly as it talks to Alpaca:

- GET /v2/account                      -> state["account"]
- GET /v2/positions                    -> state["positions"]
- GET /v2/orders?status=open&limit=N   -> state["orders"] whose status is open
- GET /v2/account/activities/FILL      -> state["activities"], direction/after/until/page_size/page_token

Faults can be planted (`add_fault`): an HTTP status, a delay, or a body dripped a byte at a time for
the next N matching requests, so tests can show retries, a 500, a timeout and a slow answer.
`pagination` misbehaves on purpose: "endless" answers every FILL page token with a fresh full page,
"ignore_token" answers every page token with the first page again. Every request is recorded in `requests`.
Any method other than GET answers 405: the server proves maintenance never writes to the broker.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

OPEN_ORDER_STATUSES = {"new", "accepted", "pending_new", "partially_filled", "accepted_for_bidding", "held", "pending_cancel", "pending_replace"}


@dataclass
class Fault:
    path_prefix: str = ""
    status: int | None = None
    delay_seconds: float = 0.0
    remaining: int = 1
    drip_seconds_per_byte: float = 0.0


def _num(value: Any) -> str:
    """Alpaca's numbers are JSON strings."""
    if value is None:
        return "0"
    return format(Decimal(str(value)).normalize(), "f")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class DemoBrokerServer:
    """An Alpaca-compatible read-only server on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, state: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0,
                 api_key: str = "", secret_key: str = "") -> None:
        self.state: dict[str, Any] = state or empty_state()
        self.api_key = api_key
        self.secret_key = secret_key
        self.faults: list[Fault] = []
        self.pagination = "normal"  # or "endless" / "ignore_token": a broker that does not paginate properly
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DemoBrokerServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-broker", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> DemoBrokerServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self.state = state

    def add_fault(self, status: int | None = None, delay_seconds: float = 0.0, times: int = 1, path_prefix: str = "",
                  drip_seconds_per_byte: float = 0.0) -> None:
        with self._lock:
            self.faults.append(Fault(path_prefix, status, delay_seconds, times, drip_seconds_per_byte))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    return fault
        return None

    # -- answers -------------------------------------------------------------------------------
    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        state = self.state
        if path == "/v2/account":
            return 200, state.get("account", {})
        if path == "/v2/positions":
            return 200, state.get("positions", [])
        if path == "/v2/orders":
            status = query.get("status", ["open"])[0]
            orders = state.get("orders", [])
            if status == "open":
                orders = [o for o in orders if o.get("status") in OPEN_ORDER_STATUSES]
            orders = sorted(orders, key=lambda o: o.get("submitted_at") or "", reverse=query.get("direction", ["desc"])[0] == "desc")
            if "until" in query:
                orders = [o for o in orders if (o.get("submitted_at") or "") < query["until"][0]]
            limit = int(query.get("limit", ["50"])[0])
            return 200, orders[:limit]
        if path == "/v2/account/activities/FILL" or path == "/v2/account/activities":
            acts = [a for a in state.get("activities", []) if a.get("activity_type", "FILL") == "FILL"]
            direction = query.get("direction", ["desc"])[0]
            acts = sorted(acts, key=lambda a: (a.get("transaction_time", ""), a.get("id", "")), reverse=direction == "desc")
            if "after" in query:
                after = _ts(query["after"][0])
                acts = [a for a in acts if _ts(a["transaction_time"]) > after]
            if "until" in query:
                until = _ts(query["until"][0])
                acts = [a for a in acts if _ts(a["transaction_time"]) < until]
            page_size = min(100, int(query.get("page_size", ["100"])[0]))
            if self.pagination == "endless" and acts:
                page = int(query["page_token"][0].rsplit("-", 1)[1]) + 1 if "page_token" in query else 0
                return 200, [{**acts[i % len(acts)], "id": f"endless-{page}-{i}"} for i in range(page_size - 1)] + [
                    {**acts[0], "id": f"endless-{page}"}]
            if "page_token" in query and self.pagination != "ignore_token":
                ids = [a.get("id") for a in acts]
                token = query["page_token"][0]
                acts = acts[ids.index(token) + 1:] if token in ids else []
            return 200, acts[:page_size]
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, drip: float = 0.0) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    if not drip:
                        self.wfile.write(data)
                    for index in range(len(data) if drip else 0):
                        self.wfile.write(data[index:index + 1])
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                server.requests.append(("GET", parsed.path))
                if server.api_key and (
                    self.headers.get("APCA-API-KEY-ID") != server.api_key
                    or self.headers.get("APCA-API-SECRET-KEY") != server.secret_key
                ):
                    self._send(401, {"code": 40110000, "message": "request is not authorized"})
                    return
                fault = server._take_fault(parsed.path)
                if fault is not None:
                    if fault.delay_seconds:
                        time.sleep(fault.delay_seconds)
                    if fault.status:
                        self._send(fault.status, {"code": fault.status * 100000, "message": "planted fault"},
                                   {"Retry-After": "0"} if fault.status == 429 else None)
                        return
                status, body = server.answer(parsed.path, parse_qs(parsed.query))
                self._send(status, body, drip=fault.drip_seconds_per_byte if fault is not None else 0.0)

            def _refuse(self) -> None:
                server.requests.append((self.command, urlparse(self.path).path))
                self._send(405, {"code": 40500000, "message": "read-only demo broker"})

            do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        return Handler


def empty_state() -> dict[str, Any]:
    return {
        "account": {"id": "demo-account", "status": "ACTIVE", "currency": "USD", "cash": "0", "equity": "0",
                    "buying_power": "0", "portfolio_value": "0"},
        "positions": [],
        "orders": [],
        "activities": [],
    }


_DB_TO_ALPACA_STATUS = {"pending": "pending_new", "submitted": "new", "partially_filled": "partially_filled"}


def broker_state_from_db(engine, now: datetime | None = None) -> dict[str, Any]:
    """A broker state consistent with the trading database: what Alpaca would say about this account.

    Positions from open `trading.positions`, open orders from open `trading.orders` that have a
    broker id, FILL activities from `trading.fills`, cash from the latest `daily_performance`.
    """
    from sqlalchemy import select

    from trading_maintenance.core.trading import schema as ts

    now = now or datetime.now(timezone.utc)
    state = empty_state()
    with engine.connect() as conn:
        perf = conn.execute(select(ts.daily_performance).order_by(ts.daily_performance.c.date.desc()).limit(1)).mappings().first()
        positions = conn.execute(select(ts.positions).where(ts.positions.c.status == "open")).mappings().all()
        orders = conn.execute(select(ts.orders).where(ts.orders.c.status.in_(ts.ORDER_OPEN_STATUSES))).mappings().all()
        fills = conn.execute(select(ts.fills, ts.orders.c.broker_order_id).select_from(
            ts.fills.outerjoin(ts.orders, ts.fills.c.order_id == ts.orders.c.id)).order_by(ts.fills.c.timestamp)).mappings().all()
    if perf is not None:
        cash = perf["cash_balance"] or 0
        state["account"].update(cash=_num(cash), equity=_num(perf["portfolio_value"] or cash),
                                buying_power=_num(perf["buying_power"] or cash), portfolio_value=_num(perf["portfolio_value"] or cash))
    agg: dict[str, dict[str, Any]] = {}
    for row in positions:
        qty = Decimal(str(row["quantity"]))
        entry = agg.setdefault(row["ticker"], {"qty": Decimal(0), "cost": Decimal(0), "side": row["side"], "mv": Decimal(0)})
        entry["qty"] += qty
        entry["cost"] += qty * Decimal(str(row["entry_price"]))
        entry["mv"] += Decimal(str(row["market_value"] if row["market_value"] is not None else qty * Decimal(str(row["entry_price"]))))
    for symbol, entry in sorted(agg.items()):
        avg = entry["cost"] / entry["qty"] if entry["qty"] else Decimal(0)
        signed_qty = entry["qty"] if entry["side"] == "long" else -entry["qty"]
        state["positions"].append({
            "asset_id": f"demo-{symbol}", "symbol": symbol, "exchange": "NASDAQ", "asset_class": "us_equity",
            "qty": _num(signed_qty), "side": entry["side"], "avg_entry_price": _num(round(avg, 6)),
            "market_value": _num(entry["mv"] if entry["side"] == "long" else -abs(entry["mv"])),
            "cost_basis": _num(entry["cost"]),
        })
    for row in orders:
        if not row["broker_order_id"]:
            continue
        state["orders"].append({
            "id": row["broker_order_id"], "client_order_id": row["client_order_id"], "symbol": row["symbol"],
            "side": row["side"], "type": row["order_type"], "qty": _num(row["quantity"]),
            "filled_qty": _num(row["filled_quantity"] or 0), "status": _DB_TO_ALPACA_STATUS.get(row["status"], "new"),
            "submitted_at": _iso(row["submitted_at"] or row["created_at"]), "created_at": _iso(row["created_at"]),
            "limit_price": None if row["price"] is None else _num(row["price"]),
        })
    for row in fills:
        trade_id = row["trade_id"] or f"fill-{row['id']}"
        state["activities"].append({
            "id": f"{_iso(row['timestamp']).replace(':', '').replace('-', '')}::{trade_id}",
            "activity_type": "FILL", "transaction_time": _iso(row["timestamp"]), "type": "fill",
            "price": _num(row["price"]), "qty": _num(row["quantity"]), "side": row["side"],
            "symbol": row["symbol"], "leaves_qty": "0", "order_id": row["broker_order_id"] or f"order-{row['order_id']}",
            "cum_qty": _num(row["quantity"]), "order_status": "filled", "trade_id": trade_id,
        })
    return state


def load_state(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
