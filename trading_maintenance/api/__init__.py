"""The maintenance REST API and its dashboard, over the same Dagster instance as every other way in."""

from trading_maintenance.api.app import create_app

__all__ = ["create_app"]
