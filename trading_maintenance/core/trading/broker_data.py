"""What the broker's answers are made of: its error type and its numbers (JSON strings)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


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
