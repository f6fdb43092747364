"""The broker: a read-only Alpaca Trading API v2 client, and the resource that builds it.

`AlpacaClient` is a plain class (usable outside Dagster: the CLI, the security audit, scripts).
It only ever sends GET requests: maintenance never places, changes or cancels anything at the broker.

Every failure raises `BrokerError` with a readable message whose secrets are masked; a failed or
missing answer is never turned into an empty ("flat") portfolio.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from trading_maintenance.core.common.masking import mask_text, mask_url
from trading_maintenance.core.trading.broker_data import BrokerError

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _RequestDeadline(Exception):
    """The whole request (not one network read) ran past its deadline."""


class AlpacaClient:
    """Read-only Alpaca v2 client: account, positions, open orders, FILL activities (paginated).

    Retries 429 and 5xx answers, timeouts and connection errors with exponential backoff
    (Retry-After honoured, capped); any other non-2xx answer fails at once.

    Time and size are bounded three ways: `timeout_seconds` per network read, `request_deadline_seconds`
    for one whole request (connect, headers and body: a server dripping bytes cannot stretch it), and
    `read_deadline_seconds` for everything this client reads, counted from its creation (retries and
    pagination included). Each answer is limited to `max_response_bytes`, all of them to `max_total_bytes`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        secret_key: str = "",
        timeout_seconds: float = 10.0,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        transport: httpx.BaseTransport | None = None,
        request_deadline_seconds: float = 30.0,
        read_deadline_seconds: float = 300.0,
        max_response_bytes: int = 20 * 1024 * 1024,
        max_total_bytes: int = 200 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or ""
        self._secret_key = secret_key or ""
        self.timeout_seconds = timeout_seconds
        self.max_retries = max(0, int(max_retries))
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.request_deadline_seconds = request_deadline_seconds
        self.read_deadline_seconds = read_deadline_seconds
        self.max_response_bytes = max_response_bytes
        self.max_total_bytes = max_total_bytes
        self._read_deadline = time.monotonic() + read_deadline_seconds
        import httpx  # with the first client, not with the definitions

        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_seconds),
            headers={
                "APCA-API-KEY-ID": self._api_key,
                "APCA-API-SECRET-KEY": self._secret_key,
                "Accept": "application/json",
                "User-Agent": "trading-maintenance (read-only)",
            },
            transport=transport,
        )
        self.requests_made = 0
        self.bytes_read = 0

    # -- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AlpacaClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _mask(self, text: str) -> str:
        return mask_text(text, [self._api_key, self._secret_key])

    def describe(self) -> str:
        return mask_url(self.base_url)

    def _remaining(self, endpoint: str) -> float:
        remaining = self._read_deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"{endpoint} at {self.describe()}: the broker read exceeded its deadline of "
                f"{self.read_deadline_seconds:g}s after {self.requests_made} requests", endpoint=endpoint,
            )
        return remaining

    def _fetch(self, path: str, params: dict[str, Any] | None, deadline: float) -> tuple[int, str | None, bytes]:
        """One request, in a worker thread so the caller returns at the deadline whatever the server does
        (a dribble of header bytes included); the worker stops at its next chunk."""
        outcome: dict[str, Any] = {}
        done = threading.Event()
        given_up = threading.Event()
        budget = max(0, min(self.max_response_bytes, self.max_total_bytes - self.bytes_read))

        import httpx

        def work() -> None:
            try:
                read_timeout = min(self.timeout_seconds, max(0.001, deadline - time.monotonic()))
                with self._client.stream("GET", path, params=params, timeout=httpx.Timeout(read_timeout)) as response:
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > budget:
                            outcome["too_large"] = len(body)
                            break
                        if given_up.is_set() or time.monotonic() > deadline:
                            outcome["late"] = True
                            break
                    outcome["answer"] = (response.status_code, response.headers.get("Retry-After"), bytes(body))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="broker-request", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            given_up.set()
            raise _RequestDeadline("request deadline")
        if "error" in outcome:
            raise outcome["error"]
        if outcome.get("late"):
            raise _RequestDeadline("request deadline")
        status, retry_after, body = outcome["answer"]
        self.bytes_read += len(body)
        if "too_large" in outcome:
            limit = "per answer" if budget == self.max_response_bytes else "for the whole read"
            raise BrokerError(f"GET {path} at {self.describe()}: answer larger than {budget} bytes ({limit} limit)",
                              status, f"GET {path}")
        return status, retry_after, body

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        import httpx

        attempt = 0
        endpoint = f"GET {path}"
        while True:
            attempt += 1
            wait = min(self.max_backoff_seconds, self.backoff_seconds * (2 ** (attempt - 1)))
            remaining = self._remaining(endpoint)
            request_seconds = min(self.request_deadline_seconds, remaining)
            try:
                self.requests_made += 1
                status, retry_after, body = self._fetch(path, params, time.monotonic() + request_seconds)
            except _RequestDeadline:
                problem, status = f"the whole request took longer than {request_seconds:g}s", None
            except httpx.TimeoutException:
                problem, status = f"timed out after {self.timeout_seconds:g}s", None
            except httpx.HTTPError as exc:
                problem, status = f"{type(exc).__name__}: {self._mask(str(exc))[:200]}", None
            else:
                if 200 <= status < 300:
                    try:
                        return json.loads(body)
                    except ValueError:
                        raise BrokerError(
                            f"{endpoint} at {self.describe()}: answer is not JSON", status, endpoint
                        ) from None
                text = body[:200].decode("utf-8", "replace").replace("\n", " ")
                masked = self._mask(text)
                problem = f"HTTP {status}" + (f": {masked}" if masked else "")
                if status not in RETRY_STATUSES:
                    hint = " (check ALPACA_API_KEY / ALPACA_SECRET_KEY)" if status in (401, 403) else ""
                    raise BrokerError(f"{endpoint} at {self.describe()} failed: {problem}{hint}", status, endpoint)
                if retry_after:
                    try:
                        wait = min(self.max_backoff_seconds, max(0.0, float(retry_after)))
                    except ValueError:
                        pass
            if attempt > self.max_retries:
                raise BrokerError(
                    f"{endpoint} at {self.describe()} failed after {attempt} attempts: {problem}", status, endpoint
                )
            time.sleep(min(wait, max(0.0, self._read_deadline - time.monotonic())))

    # -- endpoints ----------------------------------------------------------------------------
    def get_account(self) -> dict[str, Any]:
        """GET /v2/account: cash, equity, buying_power, ... (numbers as strings)."""
        account = self._get("/v2/account")
        if not isinstance(account, dict) or "cash" not in account:
            raise BrokerError(f"GET /v2/account at {self.describe()}: answer has no 'cash'", endpoint="GET /v2/account")
        return account

    def get_positions(self) -> list[dict[str, Any]]:
        """GET /v2/positions: every open position (symbol, qty, side, avg_entry_price, market_value)."""
        positions = self._get("/v2/positions")
        if not isinstance(positions, list):
            raise BrokerError(f"GET /v2/positions at {self.describe()}: expected a list", endpoint="GET /v2/positions")
        return positions

    def get_open_orders(self, limit: int = 500, max_pages: int = 100) -> list[dict[str, Any]]:
        """GET /v2/orders?status=open, following `until` pages when a page is full."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        until: str | None = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"status": "open", "limit": limit, "direction": "desc", "nested": "false"}
            if until:
                params["until"] = until
            page = self._get("/v2/orders", params)
            if not isinstance(page, list):
                raise BrokerError(f"GET /v2/orders at {self.describe()}: expected a list", endpoint="GET /v2/orders")
            fresh = [o for o in page if o.get("id") not in seen]
            for order in fresh:
                seen.add(order.get("id"))
            out.extend(fresh)
            if len(page) < limit or not fresh:
                return out
            until = page[-1].get("submitted_at") or page[-1].get("created_at")
            if not until:
                return out
        raise BrokerError(f"GET /v2/orders at {self.describe()}: more than {max_pages} pages of open orders; result incomplete",
                          endpoint="GET /v2/orders")

    def get_fill_activities(
        self, after: str | None = None, until: str | None = None, page_size: int = 100, max_pages: int = 1000
    ) -> list[dict[str, Any]]:
        """GET /v2/account/activities/FILL, every page: page_token = id of the last activity seen.

        A page token the broker already answered means the broker is not paginating: that is an error,
        never a silent stop. Fills are returned once per id (an id on two pages is counted once).
        """
        endpoint = "GET /v2/account/activities/FILL"
        out: list[dict[str, Any]] = []
        seen_ids: set[str] = set()
        tokens: set[str] = set()
        token: str | None = None
        for page_number in range(1, max_pages + 1):
            params: dict[str, Any] = {"direction": "asc", "page_size": page_size}
            if after:
                params["after"] = after
            if until:
                params["until"] = until
            if token:
                params["page_token"] = token
            page = self._get("/v2/account/activities/FILL", params)
            if not isinstance(page, list):
                raise BrokerError(f"{endpoint} at {self.describe()}: expected a list", endpoint=endpoint)
            for activity in page:
                fill_id = str(activity.get("id") or "") if isinstance(activity, dict) else ""
                if not fill_id:
                    raise BrokerError(f"{endpoint} at {self.describe()}: page {page_number} holds a fill without an id",
                                      endpoint=endpoint)
                if fill_id not in seen_ids:
                    seen_ids.add(fill_id)
                    out.append(activity)
            if len(page) < page_size:
                return out
            next_token = str(page[-1].get("id"))
            if next_token in tokens or next_token == token:
                raise BrokerError(
                    f"{endpoint} at {self.describe()}: page {page_number} ends with page_token {next_token!r} "
                    f"again, so the broker is not paginating; {len(out)} distinct fills read, result incomplete",
                    endpoint=endpoint,
                )
            if token:
                tokens.add(token)
            token = next_token
        raise BrokerError(f"{endpoint} at {self.describe()}: more than {max_pages} pages of {page_size} fills; "
                          f"result incomplete", endpoint=endpoint)


class AlpacaBrokerResource(dg.ConfigurableResource):
    """The Alpaca brokerage account, read-only (ALPACA_BASE_URL, ALPACA_API_KEY, ALPACA_SECRET_KEY)."""

    base_url: str = Field(default="https://paper-api.alpaca.markets", description="ALPACA_BASE_URL")
    api_key: str = Field(default="", description="ALPACA_API_KEY (secret)")
    secret_key: str = Field(default="", description="ALPACA_SECRET_KEY (secret)")
    timeout_seconds: float = Field(default=10.0, description="per request")
    max_retries: int = Field(default=3, description="retries on 429/5xx, timeouts and connection errors")
    backoff_seconds: float = Field(default=0.5, description="first retry wait; doubles each retry")
    request_deadline_seconds: float = Field(default=30.0, gt=0, description="one whole request, however slowly the answer comes")
    read_deadline_seconds: float = Field(default=300.0, gt=0, description="everything one client reads, retries and pages included")
    max_response_bytes: int = Field(default=20 * 1024 * 1024, gt=0, description="largest single answer accepted")

    def get_client(self) -> AlpacaClient:
        return AlpacaClient(
            self.base_url,
            self.api_key,
            self.secret_key,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
            request_deadline_seconds=self.request_deadline_seconds,
            read_deadline_seconds=self.read_deadline_seconds,
            max_response_bytes=self.max_response_bytes,
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.secret_key) if s]

    def configured(self) -> bool:
        return bool(self.base_url and self.api_key and self.secret_key)
