"""tradenote_export: one calendar day's fills as TradeNote's Template CSV, metrics, risk, one package."""

import io
import json
import zipfile
from datetime import date, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
from sqlalchemy import func, select

from trading_maintenance.core.common.alerts import Alert
from trading_maintenance.core.common.atomic import atomic_write_bytes, atomic_write_text
from trading_maintenance.core.common.market_hours import calendar
from trading_maintenance.core.common.masking import mask_text, mask_url
from trading_maintenance.core.tradenote import export as tn
from trading_maintenance.core.trading import schema as ts
from trading_maintenance.core.trading.instruments import canonical_symbol, tradenote_type
from trading_maintenance.defs.common import conclude, markdown_table, partition_check_result, publish_result
from trading_maintenance.defs.platform import TRADING_FILLS
from trading_maintenance.defs.task import OWNERS, MaintenanceTask
from trading_maintenance.defs.tradenote.partitions import journal_day_partitions
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource, TradingDatabaseResource

TRADENOTE_EXPORT = MaintenanceTask(
    "tradenote_export",
    "TradeNote export of one calendar day (journal time zone): Template CSV, metrics, risk and package, "
    "P&L checked against the database.",
)
TASK = TRADENOTE_EXPORT.name


def export_paths(exports_dir, day: date) -> dict:
    base = exports_dir / "tradenote"
    stem = f"tradenote_{day.isoformat()}"
    return {"csv": base / f"{stem}.csv", "metrics": base / f"{stem}_metrics.json", "risk": base / f"{stem}_risk.json",
            "package": base / f"{stem}.zip"}


def day_fills(engine, day: date, tz_name: str) -> tuple[list[tn.Fill], dict[str, Decimal]]:
    """The day's fills (a calendar day of the journal's zone) and the opening position of each instrument
    traded that day. Symbols are written in the broker's spelling, so BTCUSD and BTC/USD are one instrument."""
    start, end = tn.day_bounds_utc(day, tz_name)
    with engine.connect() as conn:
        rows = conn.execute(select(ts.fills).where(ts.fills.c.timestamp >= start, ts.fills.c.timestamp < end)
                            .order_by(ts.fills.c.timestamp, ts.fills.c.id)).mappings().all()
        opening: dict[str, Decimal] = {}
        if rows:
            for sym, side, qty in conn.execute(
                select(ts.fills.c.symbol, ts.fills.c.side, func.sum(ts.fills.c.quantity))
                .where(ts.fills.c.timestamp < start).group_by(ts.fills.c.symbol, ts.fills.c.side)
            ):
                symbol = canonical_symbol(sym)
                opening[symbol] = opening.get(symbol, Decimal(0)) + (Decimal(str(qty)) if side == "buy" else -Decimal(str(qty)))
    fills = []
    for r in rows:
        stamp = r["timestamp"] if r["timestamp"].tzinfo else r["timestamp"].replace(tzinfo=timezone.utc)
        symbol = canonical_symbol(r["symbol"])
        kind, multiplier = tradenote_type(symbol)
        fills.append(tn.Fill(symbol, r["side"], Decimal(str(r["quantity"])), Decimal(str(r["price"])), stamp,
                             Decimal(str(r["commission"] or 0)), r["trade_id"] or f"fill-{r['id']}", r["liquidity"] or "",
                             multiplier, kind))
    traded = {f.symbol for f in fills}
    return fills, {k: v for k, v in opening.items() if v != 0 and k in traded}


def next_session_fn(calendar_name: str):
    import pandas as pd  # heavy: only runs that export need it

    cal = calendar(calendar_name)

    def next_session(day: date) -> date:
        return cal.next_session(pd.Timestamp(day)).date() if cal.is_session(pd.Timestamp(day)) else cal.date_to_session(pd.Timestamp(day), "next").date()

    return next_session


@dg.asset(
    partitions_def=journal_day_partitions,
    deps=[TRADING_FILLS],
    group_name="tradenote",
    kinds={"csv", "postgres"},
    owners=OWNERS,
    pool=TRADENOTE_EXPORT.pool,
    # exported every evening: two days without an export means the schedule or the daemon has stopped
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=2)),
    description="TradeNote Template CSV of one calendar day's fills in the journal's time zone, weekends and holidays "
    "included (exports/tradenote/tradenote_YYYY-MM-DD.csv), "
    "with performance metrics and risk statistics JSON and a zip package of all three.",
)
def tradenote_export(
    context: dg.AssetExecutionContext,
    settings: MaintenanceSettingsResource,
    trading_db: TradingDatabaseResource,
    redis: RedisResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    cfg = settings.get()
    tcfg = cfg.trading
    day = date.fromisoformat(context.partition_key)
    trading_db.ensure_schema()
    fills, opening = day_fills(trading_db.get_engine(), day, tcfg.journal_timezone)
    paths = export_paths(cfg.exports_dir, day)
    client = redis.get_client()
    result = {"run_id": context.run_id, "dry_run": False, "partition": context.partition_key, "fills": len(fills)}
    if not fills:
        context.log.info(f"{day}: no fills, so no TradeNote file")
        result.update(status="success", rows=0, note="no fills: no CSV written")
        publish_result(client, TASK, result, context.log)
        return dg.MaterializeResult(metadata={"fills": 0, "rows": 0, "note": "no fills on this day: no CSV written"})

    rows = tn.build_rows(fills, opening, tcfg.tradenote_account, tcfg.journal_timezone,
                         next_session_fn(cfg.maintenance.scheduling.market_calendar))
    for row in rows:  # keep pro-rata fee splits readable
        row.comm = row.comm.quantize(Decimal("0.000001")) if row.comm != row.comm.to_integral_value() else row.comm
        row.net = row.gross - row.comm
    text = tn.to_csv(rows)
    trades = tn.replay(tn.parse_csv(text))
    metrics = {"date": day.isoformat(), **tn.performance_metrics(trades)}
    risk = {"date": day.isoformat(), **tn.risk_statistics(trades)}
    atomic_write_text(paths["csv"], text)
    atomic_write_text(paths["metrics"], json.dumps(metrics, indent=2))
    atomic_write_text(paths["risk"], json.dumps(risk, indent=2))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in ("csv", "metrics", "risk"):
            archive.writestr(paths[key].name, paths[key].read_bytes())
    atomic_write_bytes(paths["package"], buffer.getvalue())

    upload = "not configured"
    if tcfg.tradenote_url and tcfg.tradenote_api_key:
        upload = post_to_tradenote(tcfg.tradenote_url, tcfg.tradenote_api_key.get_secret_value(), text)
    result.update(status="success" if upload in ("ok", "not configured") else "failed", rows=len(rows), csv=str(paths["csv"]),
                  package=str(paths["package"]), upload=upload, carried_in=sorted(opening), **{k: metrics[k] for k in ("trades", "net_pnl")})
    preview = [dict(zip(tn.HEADER, r.as_list())) for r in rows[:20]]
    metadata = {
        "fills": dg.MetadataValue.int(len(fills)),
        "rows": dg.MetadataValue.int(len(rows)),
        "split_rows": dg.MetadataValue.int(len(rows) - len(fills)),
        "trades": dg.MetadataValue.int(metrics["trades"]),
        "net_pnl": dg.MetadataValue.float(metrics["net_pnl"]),
        "gross_pnl": dg.MetadataValue.float(metrics["gross_pnl"]),
        "win_rate": dg.MetadataValue.float(metrics["win_rate"]),
        "csv_path": dg.MetadataValue.path(str(paths["csv"])),
        "package_path": dg.MetadataValue.path(str(paths["package"])),
        "bytes": dg.MetadataValue.int(paths["csv"].stat().st_size),
        "carried_in_symbols": dg.MetadataValue.text(", ".join(sorted(opening)) or "none"),
        "upload": dg.MetadataValue.text(upload),
        "preview": dg.MetadataValue.md(
            markdown_table(preview, ["T/D", "Side", "Symbol", "Qty", "Price", "Exec Time", "Comm", "Gross Proceeds", "Net Proceeds"])
        ),
    }
    failure = alert = None
    if result["status"] == "failed":
        failure = f"TradeNote upload failed: {upload}"
        alert = Alert(key="tradenote:upload_failed", severity="warning", title="TradeNote upload failed",
                      message=f"{day}: {upload}; the CSV is in {paths['csv']}", details={"run_id": context.run_id, "partition": context.partition_key})
    conclude(context, client, TASK, result, alerts=alerts, alert=alert, failure=failure or "",
             failure_metadata={"csv_path": dg.MetadataValue.path(str(paths["csv"])), "upload": dg.MetadataValue.text(upload)})
    return dg.MaterializeResult(metadata=metadata)


def post_to_tradenote(url: str, api_key: str, csv_text: str, timeout: float = 30.0) -> str:
    """POST /api/trades with header api-key and {data, selectedBroker: 'template'}; 'ok' or why not."""
    import csv as _csv

    import httpx  # with the first upload, not with the definitions

    records = list(_csv.DictReader(io.StringIO(csv_text)))
    endpoint = url.rstrip("/") + "/api/trades"
    try:
        response = httpx.post(endpoint, headers={"api-key": api_key}, json={"data": records, "selectedBroker": "template"},
                              timeout=timeout)
    except httpx.HTTPError as exc:
        return f"failed: {type(exc).__name__} posting to {mask_url(endpoint)}"
    if response.status_code >= 300:
        return mask_text(f"failed: HTTP {response.status_code} from {mask_url(endpoint)}", [api_key])
    return "ok"


@dg.asset_check(asset=tradenote_export, blocking=True, pool=TRADENOTE_EXPORT.pool,
                description="Parse the written CSV back, replay it the way TradeNote groups trades, and require its "
                "closed-trade P&L to equal the database's realised P&L for the day to the cent, and every fill of the "
                "day (weekends and holidays included) to be in it once with its quantity and instrument type.")
def tradenote_pnl_matches_database(
    context: dg.AssetCheckExecutionContext, settings: MaintenanceSettingsResource, trading_db: TradingDatabaseResource
) -> dg.AssetCheckResult:
    cfg = settings.get()
    day = date.fromisoformat(context.run.tags["dagster/partition"])
    fills, opening = day_fills(trading_db.get_engine(), day, cfg.trading.journal_timezone)
    path = export_paths(cfg.exports_dir, day)["csv"]
    return check_export(path, fills, opening, day)


def check_export(path, fills, opening, day: date) -> dg.AssetCheckResult:
    key = day.isoformat()
    if not fills:
        ok = not path.exists()
        return partition_check_result(key, passed=ok, metadata={"fills": 0, "note": "no fills, no file" if ok else f"{path} exists for a day without fills"})
    if not path.exists():
        return partition_check_result(key, passed=False, metadata={"problem": f"{path} is missing"})
    try:
        parsed = tn.parse_csv(path.read_text())
    except tn.TemplateError as exc:
        return partition_check_result(key, passed=False, metadata={"problem": str(exc)})
    problems = tn.replay_check(parsed)
    carried = set(opening)
    trades = [t for t in tn.replay(parsed) if t.symbol not in carried]
    csv_gross, csv_net, csv_closed = tn.closed_trade_pnl(trades)
    db = tn.realised_pnl([f for f in fills if f.symbol not in carried])
    if tn.cents(csv_net) != tn.cents(db.net):
        problems.append(f"net P&L: CSV {tn.cents(csv_net)} != database {tn.cents(db.net)}")
    if tn.cents(csv_gross) != tn.cents(db.gross):
        problems.append(f"gross P&L: CSV {tn.cents(csv_gross)} != database {tn.cents(db.gross)}")
    if csv_closed != db.closed_trades:
        problems.append(f"closed trades: CSV {csv_closed} != database {db.closed_trades}")
    # every fill of the day, carried positions included: each one in the file, with its quantity and type
    exported = tn.exported_trade_ids(path.read_text())
    missing = sorted(f.trade_id for f in fills if f.trade_id not in exported)
    if missing:
        problems.append(f"{len(missing)} fills of the day are not in the CSV: {', '.join(missing[:10])}")
    unknown = sorted(exported - {f.trade_id for f in fills})
    if unknown:
        problems.append(f"{len(unknown)} CSV rows are not fills of the day: {', '.join(unknown[:10])}")
    for symbol in sorted({f.symbol for f in fills} | {r["Symbol"] for r in parsed}):
        csv_qty = sum((Decimal(r["Qty"]) for r in parsed if r["Symbol"] == symbol), Decimal(0))
        db_qty = sum((f.quantity for f in fills if f.symbol == symbol), Decimal(0))
        if csv_qty != db_qty:
            problems.append(f"{symbol} quantity: CSV {csv_qty} != database fills {db_qty}")
        db_types = {f.asset_type for f in fills if f.symbol == symbol}
        csv_types = {r["Type"] for r in parsed if r["Symbol"] == symbol}
        if csv_types != db_types:
            problems.append(f"{symbol} type: CSV {sorted(csv_types)} != {sorted(db_types)}")
    return partition_check_result(
        key,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"csv_net_pnl": float(tn.cents(csv_net)), "database_net_pnl": float(tn.cents(db.net)),
                  "closed_trades": csv_closed, "carried_in_symbols": ", ".join(sorted(carried)) or "none",
                  "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )


tradenote_export_job = TRADENOTE_EXPORT.asset_job(
    "tradenote_export_job", selection=dg.AssetSelection.assets(tradenote_export), partitions_def=journal_day_partitions
)


def unexported_fills(engine, exports_dir, day, zone: str) -> int:
    """Fills of the day that its export file does not hold (they arrived after it was written)."""
    fills, _ = day_fills(engine, day, zone)
    path = export_paths(exports_dir, day)["csv"]
    exported = tn.exported_trade_ids(path.read_text()) if path.exists() else set()
    return sum(1 for fill in fills if fill.trade_id not in exported)


def _days_due(context: dg.ScheduleEvaluationContext, settings: MaintenanceSettingsResource,
                              trading_db: TradingDatabaseResource):
    cfg = settings.get()
    zone = cfg.trading.journal_timezone
    day = context.scheduled_execution_time.astimezone(ZoneInfo(zone)).date()
    requests = [dg.RunRequest(run_key=f"tradenote_export:{day.isoformat()}", partition_key=day.isoformat())]
    previous = day - timedelta(days=1)
    late = unexported_fills(trading_db.get_engine(), cfg.exports_dir, previous, zone)
    if late:
        context.log.info(f"{late} fills of {previous.isoformat()} are not in its export: exporting it again")
        requests.insert(0, dg.RunRequest(run_key=f"tradenote_export:{previous.isoformat()}:{late}-late",
                                         partition_key=previous.isoformat()))
    return requests


tradenote_export_schedule = TRADENOTE_EXPORT.schedule(tradenote_export_job, _days_due)
