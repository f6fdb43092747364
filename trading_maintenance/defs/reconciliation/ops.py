"""Portfolio reconciliation: broker vs database vs Redis as the `portfolio_reconciliation_report` asset;
report; alert; optional Redis refresh; its job and weekly schedule."""

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.common.atomic import atomic_write_text
from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.core.reconciliation.compare import (
    Tolerances,
    normalize_symbols,
    plan_redis_fixes,
    reconcile,
    report_markdown,
    summarize,
)
from trading_maintenance.core.reconciliation.sources import (
    apply_redis_fixes,
    broker_view,
    db_view,
    market_minutes_between,
    redis_view,
)
from trading_maintenance.defs.common import conclude, markdown_table
from trading_maintenance.defs.platform import BROKER_ACCOUNT, REDIS_STATE, TRADING_DATABASE
from trading_maintenance.defs.task import OWNERS, MaintenanceTask
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource, TradingDatabaseResource
from trading_maintenance.resources.broker import AlpacaBrokerResource, BrokerError

PORTFOLIO_RECONCILIATION = MaintenanceTask(
    "portfolio_reconciliation",
    "Portfolio reconciliation: broker (Alpaca) vs database vs Redis positions, cash, orders and fills. Read-only at the broker.",
)
TASK = PORTFOLIO_RECONCILIATION.name
RECONCILIATION_REPORT = dg.AssetKey("portfolio_reconciliation_report")


class ReconciliationConfig(dg.Config):
    dry_run: bool = False  # with apply_fixes: list the Redis refreshes instead of making them
    apply_fixes: bool = False  # refresh the Redis view from the broker's answer (never the broker, never the DB)
    send_alerts: bool = True


@dg.multi_asset(
    name="reconcile_portfolio",
    specs=[
        dg.AssetSpec(
            RECONCILIATION_REPORT,
            deps=[BROKER_ACCOUNT, *TRADING_DATABASE, REDIS_STATE],
            description="Positions, cash, orders and fills as the broker, the trading database and Redis each see them, "
            "compared (reports/reconciliation/). The broker is the truth: a critical difference means the trading "
            "engine may act on positions or cash it does not have, and fails the run with an alert.",
            group_name="reconciliation",
            kinds={"json", "alpaca", "postgres", "redis"},
            owners=OWNERS,
        )
    ],
    pool=PORTFOLIO_RECONCILIATION.pool,
    description="Compare broker, database and Redis positions, cash, orders and fills; report; alert on critical differences.",
)
def reconcile_portfolio(
    context: dg.AssetExecutionContext,
    config: ReconciliationConfig,
    settings: MaintenanceSettingsResource,
    redis: RedisResource,
    trading_db: TradingDatabaseResource,
    broker: AlpacaBrokerResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    cfg = settings.get()
    tcfg = cfg.trading
    now = datetime.now(timezone.utc)
    tol = Tolerances(Decimal(str(tcfg.price_tolerance_pct)), Decimal(str(tcfg.quantity_tolerance)),
                     Decimal(str(tcfg.cash_tolerance)), tcfg.stuck_order_minutes, tuple(tcfg.critical_checks))
    since = now - timedelta(days=tcfg.fills_lookback_days)
    client = redis.get_client()
    calendar_name = cfg.maintenance.scheduling.market_calendar
    result: dict = {"run_id": context.run_id, "dry_run": config.dry_run, "apply_fixes": config.apply_fixes,
                    "checked_at": now.isoformat(), "lookback_days": tcfg.fills_lookback_days}

    try:
        with broker.get_client() as api:
            b_view = broker_view(api, since, now)
    except BrokerError as exc:
        message = mask_text(str(exc), broker.secrets())
        result.update(status="failed", error=f"broker unavailable: {message}", discrepancies=[])
        conclude(context, client, TASK, result, alerts=alerts if config.send_alerts else None,
                 alert=Alert(key="reconciliation:broker", severity="critical", title="Reconciliation could not read the broker",
                             message=message),
                 failure=f"broker unavailable, nothing reconciled: {message}",
                 failure_metadata={"error": message, "broker": broker.base_url})

    trading_db.ensure_schema()
    d_view = db_view(trading_db.get_engine(), since, now, [o.broker_order_id for o in b_view.open_orders],
                     [o.client_order_id for o in b_view.open_orders if o.client_order_id])
    r_view = redis_view(client)
    symbol_mapping = normalize_symbols(b_view, d_view, r_view)
    found = reconcile(b_view, d_view, r_view, now, tol, lambda s, e: market_minutes_between(s, e, calendar_name))
    critical = [d for d in found if d.severity == "critical"]
    problems = d_view.problems + r_view.problems

    changes: list[str] = []
    fixes = plan_redis_fixes(b_view, r_view, found, now.isoformat(), r_view.skipped_keys) if config.apply_fixes else []
    if fixes and not config.dry_run:
        changes = apply_redis_fixes(client, fixes)
        after = redis_view(client)
        normalize_symbols(after)
        still = [d for d in reconcile(b_view, d_view, after, now, tol, lambda s, e: 0.0)
                 if d.view == "redis" and d.check in ("position", "cash")
                 and f"positions:{after.spellings.get(d.symbol, d.symbol)}" not in after.skipped_keys]
        if still:
            problems.append(f"{len(still)} Redis differences remain after the refresh")
    elif fixes:
        changes = [f"would {f.action} {f.key}: {f.reason}" for f in fixes]

    counts = summarize(found)
    result.update(
        status="failed" if critical else "success",
        discrepancies=[d.as_dict() for d in found],
        discrepancy_counts=counts,
        critical_count=len(critical),
        broker_positions=len(b_view.positions), database_positions=len(d_view.positions), redis_positions=len(r_view.positions),
        broker_fills=len(b_view.fills or []), database_fills=len(d_view.fills or []),
        broker_cash=str(b_view.cash), database_cash=str(d_view.cash), redis_cash=str(r_view.cash),
        problems=problems, redis_changes=changes, symbol_mapping=symbol_mapping,
    )
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    out_dir = cfg.reports_dir / "reconciliation"
    json_path = atomic_write_text(out_dir / f"reconciliation_{stamp}.json", json.dumps(result, indent=2, default=str))
    md = report_markdown(found, {"checked_at": now.isoformat(), "broker": broker.base_url, "critical": len(critical),
                                 "symbol mapping": ", ".join(f"{raw} -> {canonical}" for raw, canonical in symbol_mapping.items()) or "none",
                                 "redis changes": len(changes) if not config.dry_run else 0})
    atomic_write_text(out_dir / f"reconciliation_{stamp}.md", md)
    result["report_path"] = str(json_path)
    rows = [{"severity": d.severity, "check": d.check, "kind": d.kind, "view": d.view, "symbol": d.symbol, "detail": d.detail} for d in found]
    metadata = {
        "discrepancies": dg.MetadataValue.int(len(found)),
        "critical_discrepancies": dg.MetadataValue.int(len(critical)),
        **{f"{check}_discrepancies": dg.MetadataValue.int(counts.get(check, 0))
           for check in ("position", "cash", "stuck_order", "orphaned_order", "vanished_order", "fill")},
        "report": dg.MetadataValue.md(markdown_table(rows)),
        "report_path": dg.MetadataValue.path(str(json_path)),
        "redis_changes": dg.MetadataValue.md("\n".join(f"- {c}" for c in changes) or "none"),
        "problems_skipped": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        "symbol_mapping": dg.MetadataValue.md("\n".join(f"- {raw} -> {canonical}" for raw, canonical in symbol_mapping.items())
                                              or "every view spells its symbols as the broker does"),
    }
    for d in found:
        (context.log.warning if d.severity == "critical" else context.log.info)(f"[{d.check}/{d.kind}] {d.view} {d.symbol}: {d.detail}")
    conclude(context, client, TASK, result, alerts=alerts if config.send_alerts else None,
             alert=Alert(key="reconciliation:critical", severity="critical",
                         title=f"{len(critical)} critical portfolio discrepancies",
                         message="; ".join(d.detail for d in critical[:5]),
                         details={k: v for k, v in counts.items()}) if critical else None,
             failure=f"{len(critical)} critical discrepancies between broker, database and Redis" if critical else "",
             failure_metadata={"discrepancies": len(found), "critical": len(critical), "report_path": str(json_path),
                               "summary": dg.MetadataValue.md(markdown_table(rows))})
    return dg.MaterializeResult(asset_key=RECONCILIATION_REPORT, metadata=metadata)


portfolio_reconciliation_job = PORTFOLIO_RECONCILIATION.asset_job(
    "portfolio_reconciliation_job", selection=dg.AssetSelection.assets(RECONCILIATION_REPORT)
)


portfolio_reconciliation_schedule = PORTFOLIO_RECONCILIATION.schedule(portfolio_reconciliation_job)
