"""Database maintenance: measure, VACUUM/ANALYZE/REINDEX (or the SQLite equivalents), purge old records; its job and weekly schedule."""

from datetime import datetime, timedelta, timezone

import dagster as dg
from sqlalchemy.exc import DBAPIError

from trading_maintenance.core.common.market_hours import is_market_open
from trading_maintenance.core.database.maintenance import Action, plan_postgres
from trading_maintenance.defs.common import conclude, markdown_table
from trading_maintenance.defs.task import MaintenanceTask
from trading_maintenance.resources import MaintenanceSettingsResource, RedisResource, TradingDatabaseResource

DATABASE_MAINTENANCE = MaintenanceTask(
    "database_maintenance",
    "Database maintenance: measure, VACUUM/ANALYZE, REINDEX bloated indexes, purge records older than a year after a verified parquet archive.",
)
TASK = DATABASE_MAINTENANCE.name


class DatabaseMaintenanceConfig(dg.Config):
    dry_run: bool = False  # measure and plan only: no VACUUM/REINDEX/purge
    purge: bool = True  # archive then delete records older than trading.purge_after_days
    allow_during_market_hours: bool = False  # heavy maintenance never runs while NYSE is open unless forced


def _size_rows(tables) -> list[dict]:
    return [{"table": t.name, "live": t.live_tuples, "dead": t.dead_tuples, "total_bytes": t.total_bytes,
             "index_bytes": t.index_bytes, "last_vacuum": t.last_vacuum or t.last_autovacuum or "",
             "last_analyze": t.last_analyze or t.last_autoanalyze or "", "xid_age": t.xid_age} for t in tables]


@dg.op(
    pool=DATABASE_MAINTENANCE.pool,
    description="Measure, VACUUM (ANALYZE) tables over the dead-tuple threshold, REINDEX bloated indexes, drop invalid ones, "
    "purge records older than a year after archiving them to parquet (SQLite: integrity_check, ANALYZE, REINDEX, VACUUM).",
)
def maintain_trading_database(
    context: dg.OpExecutionContext,
    config: DatabaseMaintenanceConfig,
    settings: MaintenanceSettingsResource,
    trading_db: TradingDatabaseResource,
    redis: RedisResource,
) -> dict:
    from trading_maintenance.core.database import sql as database_sql  # pyarrow: loaded by a run, not at load

    cfg = settings.get()
    tcfg = cfg.trading
    now = datetime.now(timezone.utc)
    client = redis.get_client()
    result: dict = {"run_id": context.run_id, "dry_run": config.dry_run, "dialect": trading_db.dialect}
    if not config.allow_during_market_hours and is_market_open(now, cfg.maintenance.scheduling.market_calendar):
        result.update(status="failed", error="NYSE is open: database maintenance refused (allow_during_market_hours to force)")
        conclude(context, client, TASK, result, failure=result["error"])
    engine = trading_db.get_engine()
    stopped = ""
    try:
        database_sql.run_interruptible(engine, trading_db.ensure_schema)
        problems, metadata = database_sql.run_interruptible(engine, _maintain, engine, config, tcfg, cfg, now, result)
    except DBAPIError as exc:
        reason = database_sql.explain_db_error(engine, exc, trading_db.lock_timeout_ms, trading_db.statement_timeout_ms)
        stopped = f"database maintenance stopped: {reason}"
    if stopped:  # outside the handler: the driver's exception (and what it may quote) is not chained to the failure
        result.update(status="failed", error=stopped)
        conclude(context, client, TASK, result, failure=stopped)
    result.update(status="failed" if problems else "success", problems=problems)
    context.add_output_metadata(metadata)
    conclude(context, client, TASK, result,
             failure=f"{len(problems)} database maintenance steps failed" if problems else "",
             failure_metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))})
    return result


def _maintain(engine, config: DatabaseMaintenanceConfig, tcfg, cfg, now: datetime, result: dict) -> tuple[list[str], dict]:
    """Every statement of the run, in one worker thread so a termination can cancel it (run_interruptible)."""
    from trading_maintenance.core.database import sql as database_sql  # pyarrow: loaded by a run, not at load

    problems: list[str] = []
    metadata: dict = {}

    if engine.dialect.name == "postgresql":
        tables, indexes, xid_age = database_sql.measure_postgres(engine)  # measured before anything is changed
    else:
        before = database_sql.sqlite_size(engine)

    # purge first: the VACUUM that follows then reclaims the purged rows' space
    purges = []
    if config.purge:
        cutoff = now - timedelta(days=tcfg.purge_after_days)
        archive_dir = cfg.data_dir / "archive" / "trading"
        purges = database_sql.purge_all(engine, cutoff, archive_dir, now.strftime("%Y%m%dT%H%M%SZ"), tcfg.purge_batch_size,
                           tcfg.lock_timeout_ms, tcfg.statement_timeout_ms, config.dry_run)
        problems += [f"purge {p.table}: {p.error}" for p in purges if p.error]
        result.update(purge_cutoff=cutoff.isoformat(), purge=[p.as_dict() for p in purges])
        metadata.update({
            "purge_cutoff": dg.MetadataValue.text(cutoff.isoformat()),
            "rows_archived": dg.MetadataValue.int(sum(p.archived for p in purges)),
            "rows_purged": dg.MetadataValue.int(sum(p.deleted for p in purges)),
            "purge": dg.MetadataValue.md(markdown_table([p.as_dict() for p in purges])),
        })

    if engine.dialect.name == "postgresql":
        thresholds = (tcfg.dead_tuple_threshold, tcfg.dead_tuple_ratio, tcfg.index_bloat_threshold_pct, tcfg.index_bloat_min_bytes)
        actions = plan_postgres(tables, [], *thresholds)
        purged = {f"trading.{p.table}": p.deleted for p in purges if p.deleted}
        actions = [Action("vacuum_analyze", a.target, f"{purged[a.target]} rows purged") if a.kind == "analyze" and a.target in purged
                   else a for a in actions]
        outcomes = [] if config.dry_run else database_sql.apply_postgres(engine, actions, tcfg.lock_timeout_ms, tcfg.statement_timeout_ms)
        if not config.dry_run:  # index bloat is judged on fresh statistics, after VACUUM/ANALYZE
            _, indexes, _ = database_sql.measure_postgres(engine)
        index_actions = plan_postgres([], indexes, *thresholds)
        if not config.dry_run:
            outcomes += database_sql.apply_postgres(engine, index_actions, tcfg.lock_timeout_ms, tcfg.statement_timeout_ms)
        actions += index_actions
        problems += [f"{o['sql']}: {o['status']}" for o in outcomes if o["status"] != "ok"]
        before_bytes = sum(t.total_bytes for t in tables)
        result.update(before=_size_rows(tables), indexes=[i.as_dict() for i in indexes], xid_age=xid_age,
                      planned=[a.as_dict() for a in actions], actions=outcomes)
        metadata.update({
            "xid_age": dg.MetadataValue.int(xid_age),
            "dead_tuples_before": dg.MetadataValue.int(sum(t.dead_tuples for t in tables)),
            "bytes_before": dg.MetadataValue.int(before_bytes),
            "tables_vacuumed": dg.MetadataValue.int(sum(1 for a in actions if a.kind == "vacuum_analyze")),
            "indexes_reindexed": dg.MetadataValue.int(sum(1 for a in actions if a.kind == "reindex")),
            "invalid_indexes_dropped": dg.MetadataValue.int(sum(1 for a in actions if a.kind == "drop_invalid_index")),
            "tables_before": dg.MetadataValue.md(markdown_table(_size_rows(tables))),
            "indexes": dg.MetadataValue.md(markdown_table([{"index": i.name, "bytes": i.bytes, "bloat_pct": i.bloat_pct, "valid": i.valid} for i in indexes])),
            "plan": dg.MetadataValue.md(markdown_table([a.as_dict() for a in actions])),
        })
    else:
        outcomes = [] if config.dry_run else database_sql.maintain_sqlite(engine)
        problems += [f"{o['kind']} {o['target']}: {o['status']}" for o in outcomes if o["status"] != "ok"]
        result.update(before=before, actions=outcomes)
        metadata.update({"bytes_before": dg.MetadataValue.int(before["bytes"]),
                         "actions": dg.MetadataValue.md(markdown_table(outcomes) if outcomes else "dry run: nothing done")})

    if engine.dialect.name == "postgresql":
        after_tables, _, _ = database_sql.measure_postgres(engine)
        result["after"] = _size_rows(after_tables)
        metadata.update({"bytes_after": dg.MetadataValue.int(sum(t.total_bytes for t in after_tables)),
                         "dead_tuples_after": dg.MetadataValue.int(sum(t.dead_tuples for t in after_tables)),
                         "tables_after": dg.MetadataValue.md(markdown_table(_size_rows(after_tables)))})
    else:
        result["after"] = database_sql.sqlite_size(engine)
        metadata["bytes_after"] = dg.MetadataValue.int(result["after"]["bytes"])

    return problems, metadata


@DATABASE_MAINTENANCE.op_job("database_maintenance_job")
def database_maintenance_job():
    maintain_trading_database()


database_maintenance_schedule = DATABASE_MAINTENANCE.schedule(database_maintenance_job)
