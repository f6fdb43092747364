"""The original system's task names, each mapped to one Dagster job (the CLI's `--task NAME`).

Asset-backed tasks run an asset job; `partitioned` ones take a partition key (the CLI picks a
sensible default: the latest complete month or trading day).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    job_name: str
    description: str
    partitioned: str | None = None  # "monthly" / "daily" when the job's assets are partitioned
    in_run_all: bool = True


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("system_health_check", "system_health_check_job", "host, Redis, database, services and market-data health score"),
        Task("data_cleanup", "data_cleanup_job", "apply retention to market data, logs, temp, exports, reports and backups"),
        Task("log_rotation", "log_rotation_job", "rotate and compress large logs without losing a line"),
        Task("cache_cleanup", "cache_cleanup_job", "TTLs for cache keys, orphaned keys, Redis memory"),
        Task("trading_data_maintenance", "market_data_monthly_job", "consolidate daily market data into monthly archives", partitioned="monthly"),
        Task("portfolio_reconciliation", "portfolio_reconciliation_job", "compare broker, database and Redis positions, cash, orders and fills"),
        Task("tradenote_export", "tradenote_export_job", "TradeNote CSV export of a trading day's fills", partitioned="daily"),
        Task("database_maintenance", "database_maintenance_job", "vacuum, analyze, reindex and purge old trading records"),
        Task("backup", "backup_archive_job", "back up configuration, Redis, the database and trading data"),
        Task("performance_optimization", "performance_optimization_job", "measure Redis, database, disk and network; recommend"),
        Task("resource_optimization", "resource_optimization_job", "apply safe resource optimisations (memory purge, trims)"),
        Task("security_audit", "security_audit_job", "secrets in logs, permissions, key age, exposed services"),
        Task("api_rate_limit_reset", "api_rate_limit_job", "archive and reset daily API rate-limit counters"),
        Task("intelligent_maintenance", "intelligent_maintenance_job", "trend and anomaly analysis over maintenance history"),
        Task("emergency_maintenance", "emergency_maintenance_job", "re-check health and free space now", in_run_all=False),
    ]
}
ALIASES = {"backup_critical_data": "backup"}


def resolve_task(name: str) -> Task:
    """The task for a name or alias; KeyError with the valid names otherwise."""
    key = ALIASES.get(name, name)
    if key not in TASKS:
        raise KeyError(name)
    return TASKS[key]


def valid_task_names() -> list[str]:
    return sorted([*TASKS, *ALIASES])
