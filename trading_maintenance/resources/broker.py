"""The broker: a read-only Alpaca Trading API v2 client, and the resource that builds it.

`AlpacaClient` is a plain class (usable outside Dagster: the CLI, the security audit, scripts).
It only ever sends GET requests: maintenance never places, changes or cancels anything at the broker.

Every failure raises `BrokerError` with a readable message whose secrets are masked; a failed or
missing answer is never turned into an empty ("flat") portfolio.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from trading_maintenance.core.masking import mask_text, mask_url

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class BrokerError(RuntimeError):
    """The broker could not be read. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, endpoint: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint


def to_decimal(value: Any, field: str = "value") -> Decimal:
    """Alpaca sends numbers as JSON strings; a missing or malformed number is an error, never 0."""
    if value is None or value == "":
        raise BrokerError(f"broker answer has no {field}")
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BrokerError(f"broker answer has a malformed {field}: {str(value)[:40]!r}") from None


class AlpacaClient:
    """Read-only Alpaca v2 client: account, positions, open orders, FILL activities (paginated).

    Retries 429 and 5xx answers, timeouts and connection errors with exponential backoff
    (Retry-After honoured, capped); any other non-2xx answer fails at once.
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or ""
        self._secret_key = secret_key or ""
        self.timeout_seconds = timeout_seconds
        self.max_retries = max(0, int(max_retries))
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
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

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        attempt = 0
        endpoint = f"GET {path}"
        while True:
            attempt += 1
            wait = min(self.max_backoff_seconds, self.backoff_seconds * (2 ** (attempt - 1)))
            try:
                self.requests_made += 1
                response = self._client.get(path, params=params)
            except httpx.TimeoutException:
                problem, status = f"timed out after {self.timeout_seconds:g}s", None
            except httpx.HTTPError as exc:
                problem, status = f"{type(exc).__name__}: {self._mask(str(exc))[:200]}", None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        return response.json()
                    except ValueError:
                        raise BrokerError(
                            f"{endpoint} at {self.describe()}: answer is not JSON", status, endpoint
                        ) from None
                body = self._mask(response.text[:200].replace("\n", " "))
                problem = f"HTTP {status}" + (f": {body}" if body else "")
                if status not in RETRY_STATUSES:
                    hint = " (check ALPACA_API_KEY / ALPACA_SECRET_KEY)" if status in (401, 403) else ""
                    raise BrokerError(f"{endpoint} at {self.describe()} failed: {problem}{hint}", status, endpoint)
                retry_after = response.headers.get("Retry-After")
                if retry_after:
                    try:
                        wait = min(self.max_backoff_seconds, max(0.0, float(retry_after)))
                    except ValueError:
                        pass
            if attempt > self.max_retries:
                raise BrokerError(
                    f"{endpoint} at {self.describe()} failed after {attempt} attempts: {problem}", status, endpoint
                )
            time.sleep(wait)

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

    def get_open_orders(self, limit: int = 500) -> list[dict[str, Any]]:
        """GET /v2/orders?status=open, following `until` pages when a page is full."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        until: str | None = None
        while True:
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

    def get_fill_activities(
        self, after: str | None = None, until: str | None = None, page_size: int = 100, max_pages: int = 10000
    ) -> list[dict[str, Any]]:
        """GET /v2/account/activities/FILL, every page: page_token = id of the last activity seen."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"direction": "asc", "page_size": page_size}
            if after:
                params["after"] = after
            if until:
                params["until"] = until
            if token:
                params["page_token"] = token
            page = self._get("/v2/account/activities/FILL", params)
            if not isinstance(page, list):
                raise BrokerError(
                    f"GET /v2/account/activities/FILL at {self.describe()}: expected a list",
                    endpoint="GET /v2/account/activities/FILL",
                )
            out.extend(page)
            if len(page) < page_size:
                return out
            next_token = page[-1].get("id")
            if not next_token or next_token == token:
                return out
            token = next_token
        raise BrokerError(f"FILL activities at {self.describe()}: more than {max_pages} pages")


class AlpacaBrokerResource(dg.ConfigurableResource):
    """The Alpaca brokerage account, read-only (ALPACA_BASE_URL, ALPACA_API_KEY, ALPACA_SECRET_KEY)."""

    base_url: str = Field(default="https://paper-api.alpaca.markets", description="ALPACA_BASE_URL")
    api_key: str = Field(default="", description="ALPACA_API_KEY (secret)")
    secret_key: str = Field(default="", description="ALPACA_SECRET_KEY (secret)")
    timeout_seconds: float = Field(default=10.0, description="per request")
    max_retries: int = Field(default=3, description="retries on 429/5xx, timeouts and connection errors")
    backoff_seconds: float = Field(default=0.5, description="first retry wait; doubles each retry")

    def get_client(self) -> AlpacaClient:
        return AlpacaClient(
            self.base_url,
            self.api_key,
            self.secret_key,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds,
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.secret_key) if s]

    def configured(self) -> bool:
        return bool(self.base_url and self.api_key and self.secret_key)
