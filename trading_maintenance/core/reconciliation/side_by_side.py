"""Positions of several views side by side per symbol, with the symbols where they disagree marked."""

from __future__ import annotations

from decimal import Decimal

from trading_maintenance.core.reconciliation.compare import PortfolioView


def positions_side_by_side(views: list[PortfolioView]) -> list[dict]:
    """One row per symbol held anywhere: each view's signed quantity (None where it holds nothing)
    and `differs` when the quantities are not all equal (a missing position counts as zero)."""
    symbols = sorted({symbol for view in views for symbol in view.positions})
    rows = []
    for symbol in symbols:
        quantities = {view.name: view.positions[symbol].quantity if symbol in view.positions else None for view in views}
        held = {quantity if quantity is not None else Decimal(0) for quantity in quantities.values()}
        rows.append({"symbol": symbol, "quantities": quantities, "differs": len(held) > 1})
    return rows
