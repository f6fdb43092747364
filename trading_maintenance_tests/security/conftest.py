import pytest


@pytest.fixture(autouse=True)
def _no_live_broker(monkeypatch):
    """The audit's broker check only ever talks to a local test server."""
    for var in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "ALPACA_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
