"""Maintenance reports: daily (trading day, 18:00) and weekly (Sunday 06:00), HTML, JSON and CSV."""
