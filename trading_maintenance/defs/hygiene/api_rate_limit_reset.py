"""API rate limits: archive and reset the daily counters: its ops, job and schedule."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.hygiene import rate_limits as rate_core
from trading_maintenance.core.hygiene.failures import part_failed
from trading_maintenance.defs.common import markdown_table
from trading_maintenance.defs.hygiene.common import finish_task
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import (
    MaintenanceSettingsResource,
    RedisResource,
)

API_RATE_LIMIT_RESET = MaintenanceTask(
    "api_rate_limit_reset",
    "Archive yesterday's API rate-limit counts and reset the counters once per day; utilisation analysis.",
)


class RateLimitConfig(dg.Config):
    dry_run: bool = False
    today: str = ""  # ISO date in the platform's time zone; empty = now (for backfills and tests)


def run_rate_limit_reset(context, config: RateLimitConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    cfg = settings.get()
    hygiene = cfg.hygiene
    client = redis.get_client()
    tz = ZoneInfo(cfg.maintenance.scheduling.timezone)
    today = datetime.fromisoformat(config.today).date() if config.today else datetime.now(tz).date()
    day = today - timedelta(days=1)
    archived_at = datetime.now(timezone.utc).isoformat()
    failures: list[str] = []
    results, analyses = [], []
    for api in rate_core.discover_apis(client, hygiene.scan_count):
        res = rate_core.archive_and_reset(client, api, day, archived_at, config.dry_run)
        if res.failed:
            failures.append(f"{api}: {res.detail}")
        try:
            res.pruned = rate_core.prune_history(client, api, today, hygiene.rate_limit_history_days, config.dry_run)
        except Exception as exc:  # noqa: BLE001
            failures.append(part_failed(f"{api}: pruning history", exc))
        results.append(res.as_dict())
        history = rate_core.read_history(client, api)
        analyses.append(rate_core.analyse(api, history, today, 90, hygiene.rate_limit_warn_share).as_dict())
    results.sort(key=lambda r: r["status"] not in ("reset", "dry_run"))  # counters reset (or to reset) first
    summary = {
        "apis": len(results),
        "counters_reset": sum(1 for r in results if r["status"] == "reset"),
        "already_reset_today": sum(1 for r in results if r["status"] == "already"),
        "skipped": sum(1 for r in results if r["status"] in ("wrong_type", "not_integer", "history_wrong_type")),
        "archived_day": day.isoformat(),
    }
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            **summary,
            "resets": dg.MetadataValue.md(markdown_table(results, ["api", "status", "day", "used", "limit", "pruned", "detail"])),
            "utilisation": dg.MetadataValue.md(
                markdown_table(analyses, ["api", "days", "peak_share", "mean_share", "days_above_warn", "days_over_quota", "recommendation"])
            ),
        }
    )
    result = {"dry_run": config.dry_run, **summary, "resets": results, "utilisation": analyses}
    return finish_task(context, client, "api_rate_limit_reset", result, failures)


@dg.op(
    pool=API_RATE_LIMIT_RESET.pool,
    description="Archive yesterday's rate_limit:{api}:daily counts (with quota) into history and reset them atomically; analyse utilisation.",
)
def reset_api_rate_limits(context: dg.OpExecutionContext, config: RateLimitConfig, settings: MaintenanceSettingsResource, redis: RedisResource) -> dict:
    return run_rate_limit_reset(context, config, settings, redis)


@API_RATE_LIMIT_RESET.op_job("api_rate_limit_job")
def api_rate_limit_job():
    reset_api_rate_limits()


api_rate_limit_schedule = API_RATE_LIMIT_RESET.schedule(api_rate_limit_job)
