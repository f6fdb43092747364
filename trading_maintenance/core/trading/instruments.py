"""Instrument symbols as the broker (Alpaca) spells them, and what kind of instrument each one is.

The platform's services, Redis and the database do not all spell a symbol the same way: a share class
appears as `BRK.B`, `BRK/B`, `BRK-B` or `BRK B`, a crypto pair as `BTC/USD` or `BTCUSD`. Alpaca's own
spellings are canonical here: `BRK.B` for share classes, `BTC/USD` for crypto pairs (its order and
market-data form). Options use the OCC symbol (`AAPL240621C00190000`, root padded or not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

# Currencies a crypto pair is quoted in at Alpaca, longest first so BTCUSDT is not read as BTC/USD + T.
CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH")
# Assets traded as crypto pairs at Alpaca; an unslashed symbol is a pair only when its base is one of them,
# so an equity ticker that happens to end in USD is never turned into a pair.
CRYPTO_ASSETS = frozenset({
    "AAVE", "AVAX", "BAT", "BCH", "BTC", "CRV", "DOGE", "DOT", "ETH", "GRT", "LINK", "LTC", "MATIC", "MKR", "PEPE",
    "SHIB", "SOL", "SUSHI", "TRUMP", "UNI", "USDC", "USDT", "XRP", "XTZ", "YFI",
})
OPTION_MULTIPLIER = Decimal(100)

_OCC = re.compile(r"^(?P<root>[A-Z][A-Z0-9.]{0,5}) *(?P<expiry>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")
_SHARE_CLASS = re.compile(r"^(?P<root>[A-Z]{1,5})[./\- ](?P<cls>[A-Z]{1,2})$")
_PAIR = re.compile(r"^(?P<base>[A-Z0-9]{2,10})[/\-](?P<quote>[A-Z]{3,4})$")


@dataclass(frozen=True)
class OptionContract:
    underlying: str
    expiry: date
    right: str  # "call" / "put"
    strike: Decimal


def occ_option(symbol: str) -> OptionContract | None:
    """The contract an OCC option symbol names, or None when the symbol is not one."""
    match = _OCC.match((symbol or "").strip().upper())
    if match is None:
        return None
    try:
        expiry = date(2000 + int(match["expiry"][:2]), int(match["expiry"][2:4]), int(match["expiry"][4:]))
    except ValueError:
        return None
    return OptionContract(match["root"], expiry, "call" if match["right"] == "C" else "put",
                          Decimal(match["strike"]) / 1000)


def crypto_pair(symbol: str) -> tuple[str, str] | None:
    """(base, quote) of a crypto pair spelled `BTC/USD`, `BTC-USD` or `BTCUSD`; None otherwise."""
    text = (symbol or "").strip().upper()
    match = _PAIR.match(text)
    if match is not None:
        return (match["base"], match["quote"]) if match["quote"] in CRYPTO_QUOTES else None
    for quote in CRYPTO_QUOTES:
        base = text[: -len(quote)]
        if text.endswith(quote) and base in CRYPTO_ASSETS:
            return base, quote
    return None


def canonical_symbol(symbol: str) -> str:
    """The broker's spelling: `BTC/USD` for crypto pairs, `BRK.B` for share classes, OCC options unpadded."""
    text = (symbol or "").strip().upper()
    option = _OCC.match(text)
    if option is not None:
        return f"{option['root']}{option['expiry']}{option['right']}{option['strike']}"
    pair = crypto_pair(text)
    if pair is not None:
        return f"{pair[0]}/{pair[1]}"
    share_class = _SHARE_CLASS.match(text)
    if share_class is not None:
        return f"{share_class['root']}.{share_class['cls']}"
    return text


def tradenote_type(symbol: str) -> tuple[str, Decimal]:
    """(TradeNote Type column, contract multiplier) for a symbol.

    TradeNote's Type accepts only stock, future, forex, call and put. A crypto pair is written as
    forex: like a currency pair it is one asset priced in another, traded in fractional quantities
    with no multiplier, and TradeNote takes its P&L from the proceeds columns either way; as "stock"
    it would sit among equities in TradeNote's per-type statistics. OCC options are call or put, with
    the standard 100-share multiplier in the proceeds.
    """
    option = occ_option(symbol)
    if option is not None:
        return option.right, OPTION_MULTIPLIER
    if crypto_pair(symbol) is not None:
        return "forex", Decimal(1)
    return "stock", Decimal(1)
