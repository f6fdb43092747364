"""Trading data maintenance: monthly market-data archives and the cleanup of the daily files they
cover; its job and its weekly schedule."""

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.defs.common import RESULT_KEY, conclude, markdown_table, partition_check_result, publish_result, record_dry_run_plan
from trading_maintenance.defs.market_data.partitions import (
    market_data_daily_partitions,
    market_data_monthly_partitions,
    month_of_key,
)
from trading_maintenance.defs.task import OWNERS, MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource

TRADING_DATA_MAINTENANCE = MaintenanceTask(
    "trading_data_maintenance",
    "Trading data maintenance: consolidate a month of daily market-data files into verified zstd archives, "
    "then delete daily files past retention that a verified archive covers (only if the blocking check passed).",
)
TASK = TRADING_DATA_MAINTENANCE.name
MARKET_DATA_DAILY = dg.AssetKey("market_data_daily")
MARKET_DATA_MONTHLY = dg.AssetKey("market_data_monthly")
MARKET_DATA_CLEANUP = dg.AssetKey("market_data_daily_cleanup")

CHECK_NO_DUPLICATES = "no_duplicate_keys"
CHECK_OHLC = "ohlc_sanity"
CHECK_COVERAGE = "calendar_coverage"
CHECK_ARCHIVE = "archive_matches_sources"

OHLC_BAD_FRACTION = 0.001  # up to 0.1% of bars may fail OHLC/volume/price sanity before the check warns
COVERAGE_MISSING_FRACTION = 0.01  # up to 1% of expected intraday bars may be missing


class MarketDataConfig(dg.Config):
    dry_run: bool = False


market_data_daily = dg.AssetSpec(
    MARKET_DATA_DAILY,
    description=(
        "The data collector's daily parquet files, parquet/market_data/{SYMBOL}/{timeframe}/{YYYY-MM-DD}.parquet "
        "(external: written by the platform, not by Dagster)."
    ),
    group_name="market_data",
    kinds={"parquet"},
    owners=OWNERS,
    partitions_def=market_data_daily_partitions,
)


def _redis_client(redis: RedisResource, log):
    """The client to publish through, or None: publishing is a courtesy, never why a run fails."""
    try:
        return redis.get_client()
    except Exception as exc:  # noqa: BLE001
        log.warning(f"Redis unavailable, result not published: {type(exc).__name__}")
        return None


def _publish(redis: RedisResource, payload: dict, log) -> bool:
    client = _redis_client(redis, log)
    return client is not None and publish_result(client, TASK, payload, log)


@dg.multi_asset(
    name="market_data_monthly",
    specs=[
        dg.AssetSpec(
            MARKET_DATA_MONTHLY,
            partitions_def=market_data_monthly_partitions,
            deps=[dg.AssetDep(MARKET_DATA_DAILY, partition_mapping=dg.TimeWindowPartitionMapping())],
            group_name="market_data",
            kinds={"parquet", "polars"},
            owners=OWNERS,
            # consolidated weekly: a week and a day without a consolidation means the schedule has stopped
            freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8)),
            description=(
                "Monthly market-data archives parquet/archive/market_data/{SYMBOL}/{timeframe}/{YYYY-MM}.parquet (zstd): "
                "each month's daily files merged with any earlier archive, schemas normalised, duplicates removed "
                "(last written wins), sorted by timestamp, read back and verified. Unreadable files go to "
                "parquet/quarantine/. Stale means no consolidation ran for over a week: daily files pile up."
            ),
            skippable=True,  # a dry run records its plan, not an archive
        )
    ],
    pool=TRADING_DATA_MAINTENANCE.pool,
    can_subset=True,  # outputs and check results are optional: a dry run yields none
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NO_DUPLICATES, asset=MARKET_DATA_MONTHLY, description="No (symbol, timeframe, timestamp) key appears twice in a written archive."
        ),
        dg.AssetCheckSpec(
            CHECK_OHLC,
            asset=MARKET_DATA_MONTHLY,
            description=f"At most {OHLC_BAD_FRACTION:.1%} of bars fail OHLC, volume or price sanity "
            "(within a small relative tolerance, core.market_data.quality.OHLC_TOLERANCE).",
        ),
        dg.AssetCheckSpec(
            CHECK_COVERAGE,
            asset=MARKET_DATA_MONTHLY,
            description="Every NYSE trading day has bars and intraday sessions are complete (early closes counted as short sessions).",
        ),
        dg.AssetCheckSpec(
            CHECK_ARCHIVE,
            asset=MARKET_DATA_MONTHLY,
            blocking=True,
            description="Every archive was written, read back and found equal to its deduplicated sources; blocks deletion of daily files when it fails.",
        ),
    ],
)
def market_data_monthly(
    context: dg.AssetExecutionContext,
    config: MarketDataConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
):
    # polars and the exchange calendar load with the first run, not with the definitions
    from trading_maintenance.core.market_data.consolidate import consolidate_month
    from trading_maintenance.core.market_data.layout import archive_dir_for
    from trading_maintenance.core.market_data.months import month_sessions

    cfg = settings.get()
    month = month_of_key(context.partition_key)
    mdir = cfg.market_data_dir
    result = consolidate_month(
        mdir,
        month,
        max_workers=cfg.maintenance.performance.max_workers if cfg.maintenance.performance.parallel_processing else 1,
        dry_run=config.dry_run,
        calendar_name=cfg.maintenance.scheduling.market_calendar,
    )
    summary = result.summary()
    for q in result.quarantined:
        context.log.warning(f"quarantined {q['path']}: {q['reason']}" + (f" -> {q['moved_to']}" if q["moved_to"] else " (dry run: not moved)"))
    for path in result.stale_temporaries:
        context.log.info(("would remove" if config.dry_run else "removed") + f" a crashed writer's temporary file {path}")
    for g in result.failed:
        context.log.error(f"{g.symbol}/{g.timeframe} {month}: {g.error}")
    context.log.info(
        f"{month}: {summary['groups']} symbol-timeframes, {summary['files_read']} files, {summary['rows_in']} rows in, "
        f"{summary['rows_out']} out, {summary['duplicates_removed']} duplicates, {summary['files_quarantined']} quarantined, "
        f"{summary['seconds']}s" + (" (dry run: nothing written)" if config.dry_run else "")
    )

    status = "failed" if result.failed else "success"
    _publish(redis, {"status": status, "run_id": context.run_id, "dry_run": config.dry_run, "stage": "consolidate", **summary,
                     "failed_groups": [f"{g.symbol}/{g.timeframe}: {g.error}" for g in result.failed][:50],
                     "quarantined": [q["path"] for q in result.quarantined][:50]}, context.log)

    if config.dry_run:
        record_dry_run_plan(
            context,
            MARKET_DATA_MONTHLY,
            {"consolidate_groups": summary["groups"], "read_files": summary["files_read"],
             "quarantine_files": summary["files_quarantined"], "remove_stale_temporaries": len(result.stale_temporaries)},
            [f"quarantine {q['path']}: {q['reason']}" for q in result.quarantined]
            + [f"remove {path}" for path in result.stale_temporaries]
            + [f"consolidate {g.symbol}/{g.timeframe} {month}" for g in result.groups],
            where=f"maintenance:result:{TASK} in Redis",
        )
        return

    rows_out = max(summary["rows_out"], 1)
    ohlc_bad = summary["high_below_open_close"] + summary["low_above_open_close"] + summary["negative_volume"] + summary["non_positive_price"]
    dup_in_archives = sum(g.archive_duplicate_keys for g in result.groups)
    expected = max(summary["expected_bars"], 1)
    failed_rows = [{"symbol": g.symbol, "timeframe": g.timeframe, "error": g.error} for g in result.failed]
    checks = [
        partition_check_result(
            context.partition_key,
            asset_key=MARKET_DATA_MONTHLY,
            check_name=CHECK_NO_DUPLICATES,
            passed=dup_in_archives == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"duplicate_keys": dup_in_archives, "archives_checked": summary["archives_written"], "duplicates_removed": summary["duplicates_removed"]},
        ),
        partition_check_result(
            context.partition_key,
            asset_key=MARKET_DATA_MONTHLY,
            check_name=CHECK_OHLC,
            passed=ohlc_bad <= OHLC_BAD_FRACTION * rows_out,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "bad_bars": ohlc_bad,
                "bad_fraction": round(ohlc_bad / rows_out, 6),
                **{
                    name: summary[name]
                    for name in (
                        "high_below_open_close",
                        "low_above_open_close",
                        "negative_volume",
                        "non_positive_price",
                        "outside_session",
                        "outside_file_date",
                    )
                },
            },
        ),
        partition_check_result(
            context.partition_key,
            asset_key=MARKET_DATA_MONTHLY,
            check_name=CHECK_COVERAGE,
            passed=summary["missing_days"] == 0 and summary["missing_bars"] <= COVERAGE_MISSING_FRACTION * expected,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_days": summary["missing_days"],
                "missing_bars": summary["missing_bars"],
                "expected_bars": summary["expected_bars"],
                "trading_days_counted": len(month_sessions(month, calendar_name=cfg.maintenance.scheduling.market_calendar).counted_days),
            },
        ),
        partition_check_result(
            context.partition_key,
            asset_key=MARKET_DATA_MONTHLY,
            check_name=CHECK_ARCHIVE,
            passed=not result.failed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "archives_verified": summary["archives_verified"],
                "groups_failed": summary["groups_failed"],
                "failures": dg.MetadataValue.md(markdown_table(failed_rows)),
            },
        ),
    ]
    worst = result.worst(10)
    metadata = {
        "month": month,
        **{name: summary[name] for name in (
            "groups", "archives_written", "files_read", "rows_in", "rows_out", "duplicates_removed", "files_quarantined",
            "files_misnamed", "stale_temporaries_removed", "files_normalised", "bytes_before", "bytes_after", "bad_bars",
            "missing_days", "missing_bars")},
        "compression_ratio": dg.MetadataValue.float(float(summary["compression_ratio"])),
        "seconds": dg.MetadataValue.float(float(summary["seconds"])),
        "archive_dir": dg.MetadataValue.path(str(archive_dir_for(mdir))),
        "worst_symbols": dg.MetadataValue.md(markdown_table(worst)),
        "quarantined": dg.MetadataValue.md(markdown_table([{k: v for k, v in q.items()} for q in result.quarantined])),
    }
    yield dg.MaterializeResult(asset_key=MARKET_DATA_MONTHLY, metadata=metadata, check_results=checks)


@dg.asset(
    key=MARKET_DATA_CLEANUP,
    partitions_def=market_data_monthly_partitions,
    deps=[MARKET_DATA_MONTHLY],
    group_name="market_data",
    kinds={"parquet"},
    owners=OWNERS,
    pool=TRADING_DATA_MAINTENANCE.pool,
    output_required=False,  # a dry run records its plan, not a cleanup
    description=(
        "Deletes daily market-data files older than the retention (maintenance.data_retention.parquet_files) that a "
        "verified monthly archive covers, for this month and earlier ones; runs only when the archive check passed."
    ),
)
def market_data_daily_cleanup(
    context: dg.AssetExecutionContext,
    config: MarketDataConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    alerts: AlertsResource,
):
    # polars and the exchange calendar load with the first run, not with the definitions
    from trading_maintenance.core.market_data.layout import archive_dir_for, discover_archives
    from trading_maintenance.core.market_data.retention import delete_archived, expired_archived_daily_files

    cfg = settings.get()
    month = month_of_key(context.partition_key)
    mdir = cfg.market_data_dir
    adir = archive_dir_for(mdir)
    retention = cfg.maintenance.data_retention.parquet_files
    today = datetime.now(timezone.utc).astimezone(ZoneInfo(cfg.maintenance.scheduling.timezone)).date()
    months = sorted({m for (_, _, m) in discover_archives(adir) if m <= month})
    plan = expired_archived_daily_files(mdir, adir, retention, today, months=months)
    outcome = delete_archived(plan, mdir, adir, dry_run=config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(f"{verb} {len(plan) if config.dry_run else len(outcome.deleted)} archived daily files older than {retention} days (months up to {month})")
    for path, reason in outcome.kept:
        context.log.warning(f"kept {path}: {reason}")
    for path, reason in outcome.failed:
        context.log.error(f"could not delete {path}: {reason}")
    for problem in outcome.problems:
        context.log.error(problem)

    status = "success" if outcome.ok else "failed"
    payload = {"status": status, "run_id": context.run_id, "dry_run": config.dry_run, "stage": "cleanup"}
    try:
        previous = json.loads(redis.get_client().get(RESULT_KEY.format(task=TASK)) or "{}")
        if previous.get("run_id") == context.run_id:  # keep the consolidation numbers of this run
            payload = {**previous, **payload, "status": "failed" if previous.get("status") == "failed" or not outcome.ok else "success"}
    except Exception:  # noqa: BLE001 - publishing is a courtesy
        pass
    payload.update({
        "daily_files_planned": len(plan),
        "daily_files_deleted": len(outcome.deleted),
        "bytes_freed": outcome.bytes_freed,
        "deletion_failures": len(outcome.failed),
        "deletion_problems": outcome.problems[:20],
    })
    if config.dry_run:
        _publish(redis, payload, context.log)
        record_dry_run_plan(context, MARKET_DATA_CLEANUP, {"delete_daily_files": len(plan)},
                            [f"delete {path}" for path in outcome.planned], where=f"maintenance:result:{TASK} in Redis")
        return

    metadata = {
        "month": month,
        "retention_days": retention,
        "files_planned": len(plan),
        "files_deleted": len(outcome.deleted),
        "bytes_freed": outcome.bytes_freed,
        "files_kept_changed": len(outcome.kept),
        "files_failed": len(outcome.failed),
        "planned": dg.MetadataValue.md(markdown_table([{"path": p} for p in outcome.planned], limit=30)),
    }
    failure = alert = None
    if not outcome.ok:
        failure = f"market-data cleanup problems: {len(outcome.failed)} files not deleted, {len(outcome.problems)} verification problems"
        alert = Alert(key="market_data:cleanup_failed", severity="warning", title="Market-data cleanup failed",
                      message=f"{month}: {failure}", details={"run_id": context.run_id, "month": month})
    problems = (outcome.problems + [f"{path}: {reason}" for path, reason in outcome.failed])[:30]
    conclude(context, _redis_client(redis, context.log), TASK, payload, alerts=alerts, alert=alert, failure=failure or "",
             failure_metadata={**metadata, "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))})
    yield dg.MaterializeResult(metadata=metadata)


market_data_monthly_job = TRADING_DATA_MAINTENANCE.asset_job(
    "market_data_monthly_job",
    selection=dg.AssetSelection.assets(MARKET_DATA_MONTHLY, MARKET_DATA_CLEANUP),
    partitions_def=market_data_monthly_partitions,
)


def _months_due(context: dg.ScheduleEvaluationContext, settings: MaintenanceSettingsResource):
    # polars and the exchange calendar load with the first run, not with the definitions
    from trading_maintenance.core.market_data.months import months_to_consolidate

    calendar_name = settings.get().maintenance.scheduling.market_calendar
    moment = context.scheduled_execution_time
    keys = set(market_data_monthly_partitions.get_partition_keys(current_time=moment))
    requests = []
    for month, kind in months_to_consolidate(moment, calendar_name):
        key = f"{month}-01"
        if key not in keys:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"market_data_monthly:{key}:{kind}:{moment.date().isoformat()}",
                partition_key=key,
                tags={"maintenance/month_state": kind},
            )
        )
    if not requests:
        return dg.SkipReason(f"no market-data month to consolidate at {moment.isoformat()} (before the partitions start)")
    return requests


market_data_monthly_schedule = TRADING_DATA_MAINTENANCE.schedule(market_data_monthly_job, _months_due)
