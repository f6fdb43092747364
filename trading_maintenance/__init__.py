"""trading-maintenance: Dagster maintenance for an automated trading platform."""

__version__ = "0.1.0"
