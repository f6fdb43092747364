"""Alerts for every failed or canceled maintenance run, their resolutions, and degradation warnings."""
