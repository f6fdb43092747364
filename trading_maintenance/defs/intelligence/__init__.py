"""Intelligent maintenance: trend and anomaly analysis over health checks and run history."""
