"""TradeNote Template export: side codes, proceeds, time zones, the P&L check, and the asset end to end."""

from __future__ import annotations

import json
import threading
import zipfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from sqlalchemy import insert

from trading_maintenance.core.tradenote import export as tn
from trading_maintenance.core.trading import schema as ts
from trading_maintenance.defs.tradenote.assets import (
    check_export,
    day_fills,
    next_session_fn,
    tradenote_export,
    tradenote_export_schedule,
    tradenote_pnl_matches_database,
)
from trading_maintenance.defs.tradenote.partitions import journal_day_partitions

from ..conftest import write_config

D = Decimal
UTC = timezone.utc


def fill(symbol, side, qty, price, when, comm="0", tid=""):
    return tn.Fill(symbol, side, D(str(qty)), D(str(price)), when, D(comm), tid or f"{symbol}-{when.isoformat()}-{side}")


def at(h, m=0, day=date(2024, 3, 5)):
    return datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)


def csv_rows(fills, opening=None):
    text = tn.to_csv(tn.build_rows(fills, opening, "acct", next_session=next_session_fn("XNYS")))
    return text, tn.parse_csv(text)


def test_long_and_short_round_trips_with_fees():
    fills = [fill("AAPL", "buy", 100, 10, at(15), "1"), fill("AAPL", "sell", 100, 11, at(16), "1"),
             fill("TSLA", "sell", 50, 20, at(15, 5), "0.5"), fill("TSLA", "buy", 50, 18, at(16, 5), "0.5")]
    text, rows = csv_rows(fills)
    assert [(r["Symbol"], r["Side"], r["Gross Proceeds"], r["Net Proceeds"]) for r in rows] == [
        ("AAPL", "B", "-1000", "-1001"), ("TSLA", "SS", "1000", "999.5"), ("AAPL", "S", "1100", "1099"), ("TSLA", "BC", "-900", "-900.5")]
    trades = tn.replay(rows)
    assert {(t.symbol, t.direction, t.closed, t.net) for t in trades} == {("AAPL", "long", True, D(98)), ("TSLA", "short", True, D(99))}
    db = tn.realised_pnl(fills)
    assert (db.gross, db.net, db.closed_trades) == (D(200), D(197), 2)
    metrics = tn.performance_metrics(trades)
    assert metrics["trades"] == 2 and metrics["win_rate"] == 1.0 and metrics["net_pnl"] == 197.0 and metrics["profit_factor"] is None


def test_partial_fills_scaling_in_and_out_form_one_trade():
    fills = [fill("MSFT", "buy", 30, 100, at(15)), fill("MSFT", "buy", 70, 101, at(15, 1)),
             fill("MSFT", "sell", 50, 102, at(15, 2), "1"), fill("MSFT", "sell", 50, 99, at(15, 3), "1")]
    _, rows = csv_rows(fills)
    assert [r["Side"] for r in rows] == ["B", "B", "S", "S"]
    trades = tn.replay(rows)
    assert len(trades) == 1 and trades[0].closed and trades[0].executions == 4
    expected_gross = D(-3000) - D(7070) + D(5100) + D(4950)
    assert trades[0].gross == expected_gross == tn.realised_pnl(fills).gross
    assert tn.cents(trades[0].net) == tn.cents(tn.realised_pnl(fills).net) == D("-22.00")


def test_flip_is_split_in_two_rows_with_fees_pro_rata():
    fills = [fill("NVDA", "buy", 100, 10, at(15), "1"), fill("NVDA", "sell", 200, 12, at(15, 30), "3"),
             fill("NVDA", "buy", 100, 11, at(16), "1")]
    _, rows = csv_rows(fills)
    assert [(r["Side"], r["Qty"], r["Comm"]) for r in rows] == [("B", "100", "1"), ("S", "100", "1.5"), ("SS", "100", "1.5"), ("BC", "100", "1")]
    trades = tn.replay(rows)
    assert [(t.direction, t.closed, t.net) for t in trades] == [("long", True, D("197.5")), ("short", True, D("97.5"))]
    assert tn.realised_pnl(fills).net == D(295)


def test_times_in_new_york_and_the_evening_fill_belongs_to_the_new_york_day():
    # 23:30 UTC on March 5th is 18:30 in New York, same day; 02:30 UTC on March 6th is still March 5th there.
    fills = [fill("SPY", "buy", 1, 500, at(23, 30)), fill("SPY", "sell", 1, 501, datetime(2024, 3, 6, 2, 30, tzinfo=UTC))]
    _, rows = csv_rows(fills)
    assert [(r["T/D"], r["Exec Time"]) for r in rows] == [("03/05/2024", "18:30:00"), ("03/05/2024", "21:30:00")]
    start, end = tn.day_bounds_utc(date(2024, 3, 5))
    assert start <= fills[1].timestamp < end and not (start <= datetime(2024, 3, 6, 5, 0, tzinfo=UTC) < end)


def test_dst_change_days():
    assert tn.day_bounds_utc(date(2024, 3, 10))[1] - tn.day_bounds_utc(date(2024, 3, 10))[0] == timedelta(hours=23)
    assert tn.day_bounds_utc(date(2024, 11, 3))[1] - tn.day_bounds_utc(date(2024, 11, 3))[0] == timedelta(hours=25)
    before = fill("AAPL", "buy", 1, 1, datetime(2024, 3, 8, 14, 30, tzinfo=UTC))  # EST: 09:30
    after = fill("AAPL", "sell", 1, 1, datetime(2024, 3, 11, 13, 30, tzinfo=UTC))  # EDT: 09:30
    _, rows = csv_rows([before, after])
    assert [(r["T/D"], r["Exec Time"]) for r in rows] == [("03/08/2024", "09:30:00"), ("03/11/2024", "09:30:00")]
    autumn = fill("AAPL", "buy", 1, 1, datetime(2024, 11, 4, 14, 30, tzinfo=UTC))  # back to EST
    assert csv_rows([autumn])[1][0]["Exec Time"] == "09:30:00"


def test_symbol_with_a_dot_header_settlement_and_no_trailing_newline():
    text, rows = csv_rows([fill("BRK.B", "buy", 10, 410.5, at(15)), fill("BRK.B", "sell", 10, 411, at(16))])
    assert text.splitlines()[0] == ",".join(tn.HEADER)
    assert not text.endswith("\n") and rows[0]["Symbol"] == "BRK.B"
    assert rows[0]["S/D"] == "03/07/2024"  # T+2 before May 2024
    _, later = csv_rows([fill("X", "buy", 1, 1, datetime(2024, 7, 3, 15, tzinfo=UTC))])
    assert later[0]["S/D"] == "07/05/2024"  # T+1, skipping Independence Day
    with pytest.raises(tn.TemplateError):
        tn.parse_csv(text + "\n")


def _export(tmp_path, text):
    path = tmp_path / "tradenote_2024-03-05.csv"
    path.write_text(text)
    return path


def test_check_passes_on_a_good_file_and_fails_when_a_row_is_wrong(tmp_path):
    fills = [fill("AAPL", "buy", 100, 10, at(15), "1"), fill("AAPL", "sell", 60, 11, at(16), "1"),
             fill("AAPL", "sell", 40, 12, at(17), "1"), fill("TSLA", "sell", 10, 20, at(15), "1"), fill("TSLA", "buy", 10, 19, at(16), "1")]
    text, _ = csv_rows(fills)
    assert check_export(_export(tmp_path, text), fills, {}, date(2024, 3, 5)).passed
    lines = text.split("\n")
    wrong_price = lines[:]
    wrong_price[3] = wrong_price[3].replace(",1100,", ",1150,").replace(",660,", ",690,")  # a sell at another price
    bad_side = text.replace(",S,AAPL,60,", ",SS,AAPL,60,")
    missing_row = "\n".join(lines[:-1])
    for bad in (bad_side, missing_row, "\n".join(wrong_price), text.replace("-1000", "1000", 1)):
        assert bad != text
        assert not check_export(_export(tmp_path, bad), fills, {}, date(2024, 3, 5)).passed


def test_carried_position_is_excluded_from_the_comparison(tmp_path):
    fills = [fill("AMD", "sell", 50, 100, at(15)), fill("AAPL", "buy", 1, 10, at(15)), fill("AAPL", "sell", 1, 12, at(16))]
    text, rows = csv_rows(fills, {"AMD": D(50)})
    assert [r["Side"] for r in rows if r["Symbol"] == "AMD"] == ["S"]  # selling a long carried overnight
    result = check_export(_export(tmp_path, text), fills, {"AMD": D(50)}, date(2024, 3, 5))
    assert result.passed and result.metadata["carried_in_symbols"].value == "AMD"


class _TradeNote(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _TradeNote.received.append((self.path, self.headers.get("api-key"), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_asset_materializes_a_partition_checks_pnl_and_uploads(tmp_path, data_dir, sqlite_engine, make_resources, redis_client):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TradeNote)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _TradeNote.received = []
    config = write_config(tmp_path, data_dir, trading={"tradenote_url": f"http://127.0.0.1:{server.server_address[1]}",
                                                       "tradenote_api_key": "tn-key-123456"})
    rows = [("AAPL", "buy", 100, 10, at(15), 1), ("AAPL", "sell", 100, 11, at(16), 1), ("BRK.B", "sell", 5, 400, at(15), 0),
            ("BRK.B", "buy", 5, 390, at(19), 0), ("SPY", "buy", 2, 500, datetime(2024, 3, 6, 2, 30, tzinfo=UTC), 0),
            ("SPY", "buy", 9, 1, datetime(2024, 3, 4, 15, tzinfo=UTC), 0)]  # previous day: carried into March 5th
    with sqlite_engine.begin() as conn:
        for i, (sym, side, qty, price, when, comm) in enumerate(rows):
            conn.execute(insert(ts.fills).values(order_id=i, trade_id=f"t{i}", symbol=sym, side=side, quantity=qty, price=price,
                                                 commission=comm, timestamp=when))
    try:
        resources = make_resources(config=config)
        result = dg.materialize([tradenote_export, tradenote_pnl_matches_database], resources=resources, partition_key="2024-03-05")
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 1 and checks[0].passed
        csv_path = data_dir / "exports" / "tradenote" / "tradenote_2024-03-05.csv"
        text = csv_path.read_text()
        assert not text.endswith("\n") and len(text.split("\n")) == 6
        assert ",BRK.B," in text and ",SS,BRK.B,5,400," in text
        metrics = json.loads((data_dir / "exports" / "tradenote" / "tradenote_2024-03-05_metrics.json").read_text())
        assert metrics["trades"] == 2 and metrics["net_pnl"] == 148.0
        with zipfile.ZipFile(data_dir / "exports" / "tradenote" / "tradenote_2024-03-05.zip") as z:
            assert sorted(z.namelist()) == ["tradenote_2024-03-05.csv", "tradenote_2024-03-05_metrics.json", "tradenote_2024-03-05_risk.json"]
        assert len(_TradeNote.received) == 1
        path, key, body = _TradeNote.received[0]
        assert path == "/api/trades" and key == "tn-key-123456" and body["selectedBroker"] == "template" and len(body["data"]) == 5
        published = json.loads(redis_client.get("maintenance:result:tradenote_export"))
        assert published["status"] == "success" and "tn-key-123456" not in json.dumps(published)

        empty = dg.materialize([tradenote_export, tradenote_pnl_matches_database], resources=resources, partition_key="2024-03-07")
        assert empty.success and not (data_dir / "exports" / "tradenote" / "tradenote_2024-03-07.csv").exists()
        mat = empty.asset_materializations_for_node("tradenote_export")[0]
        assert "no fills" in mat.metadata["note"].value
    finally:
        server.shutdown()


def _insert_fills(engine, rows, first_id=1):
    with engine.begin() as conn:
        for i, (sym, side, qty, price, when) in enumerate(rows, start=first_id):
            conn.execute(insert(ts.fills).values(id=i, order_id=i, trade_id=f"t{i}", symbol=sym, side=side, quantity=qty,
                                                 price=price, commission=0, timestamp=when.astimezone(UTC)))


def test_every_calendar_day_is_a_partition_and_a_sunday_fill_is_exported_and_checked(data_dir, sqlite_engine, make_resources):
    keys = set(journal_day_partitions.get_partition_keys())
    assert {"2024-03-05", "2024-03-09", "2024-03-10", "2024-07-04", "2024-12-25"} <= keys
    ny = ZoneInfo("America/New_York")
    sunday_evening = datetime(2024, 3, 10, 23, 30, tzinfo=ny)  # overnight session opens Sunday evening
    _insert_fills(sqlite_engine, [
        ("SPY", "buy", 10, 510, sunday_evening), ("SPY", "sell", 10, 511, sunday_evening + timedelta(minutes=20)),
        ("BTC/USD", "buy", "0.5", 60000, datetime(2024, 3, 10, 12, tzinfo=ny)),
        ("BTCUSD", "sell", "0.5", 61000, datetime(2024, 3, 10, 13, tzinfo=ny)),  # the same pair as the broker spells it
        ("AAPL240621C00190000", "buy", 2, "3.10", datetime(2024, 3, 11, 10, tzinfo=ny)),
        ("AAPL240621C00190000", "sell", 2, "3.60", datetime(2024, 3, 11, 11, tzinfo=ny)),
    ])
    resources = make_resources()
    result = dg.materialize([tradenote_export, tradenote_pnl_matches_database], resources=resources, partition_key="2024-03-10")
    assert result.success and result.get_asset_check_evaluations()[0].passed
    rows = tn.parse_csv((data_dir / "exports" / "tradenote" / "tradenote_2024-03-10.csv").read_text())
    assert [(r["T/D"], r["Exec Time"], r["Type"], r["Side"], r["Symbol"]) for r in rows] == [
        ("03/10/2024", "12:00:00", "forex", "B", "BTC/USD"), ("03/10/2024", "13:00:00", "forex", "S", "BTC/USD"),
        ("03/10/2024", "23:30:00", "stock", "B", "SPY"), ("03/10/2024", "23:50:00", "stock", "S", "SPY")]
    metrics = json.loads((data_dir / "exports" / "tradenote" / "tradenote_2024-03-10_metrics.json").read_text())
    assert metrics["trades"] == 2 and metrics["net_pnl"] == 510.0  # 500 on the pair, 10 on SPY

    monday = dg.materialize([tradenote_export, tradenote_pnl_matches_database], resources=resources, partition_key="2024-03-11")
    assert monday.success and monday.get_asset_check_evaluations()[0].passed
    options = tn.parse_csv((data_dir / "exports" / "tradenote" / "tradenote_2024-03-11.csv").read_text())
    assert [(r["Type"], r["Side"], r["Gross Proceeds"]) for r in options] == [("call", "B", "-620"), ("call", "S", "720")]


def test_check_fails_when_a_fill_of_the_day_is_not_in_the_file(data_dir, sqlite_engine):
    ny = ZoneInfo("America/New_York")
    _insert_fills(sqlite_engine, [("SPY", "buy", 10, 510, datetime(2024, 3, 10, 23, 30, tzinfo=ny)),
                                  ("SPY", "sell", 10, 511, datetime(2024, 3, 10, 23, 40, tzinfo=ny))])
    fills, opening = day_fills(sqlite_engine, date(2024, 3, 10), "America/New_York")
    path = data_dir / "tradenote.csv"
    path.write_text(tn.to_csv(tn.build_rows(fills[:1], opening)))  # the sell is missing; no closed trade either side
    check = check_export(path, fills, opening, date(2024, 3, 10))
    assert not check.passed and "1 fills of the day are not in the CSV: t2" in check.metadata["problems"].value
    assert check.metadata["partition"].value == "2024-03-10" and check.description.startswith("partition 2024-03-10")
    path.write_text(tn.to_csv(tn.build_rows(fills, opening)))
    assert check_export(path, fills, opening, date(2024, 3, 10)).passed


def test_schedule_runs_every_day_and_re_exports_a_day_with_fills_after_its_export(tmp_path, data_dir, sqlite_engine, make_resources):
    resources = make_resources()
    ny = ZoneInfo("America/New_York")
    with dg.instance_for_test() as instance:
        def tick(when):
            with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                           resources={k: resources[k] for k in ("settings", "trading_db")}) as context:
                return tradenote_export_schedule(context)

        holiday = tick(datetime(2024, 7, 4, 18, tzinfo=ny))
        assert [(r.partition_key, r.run_key) for r in holiday] == [("2024-07-04", "tradenote_export:2024-07-04")]
        _insert_fills(sqlite_engine, [("SPY", "buy", 1, 500, datetime(2024, 7, 4, 17, tzinfo=ny))])
        assert dg.materialize([tradenote_export], resources=resources, partition_key="2024-07-04").success
        assert [r.partition_key for r in tick(datetime(2024, 7, 5, 18, tzinfo=ny))] == ["2024-07-05"]  # nothing new

        _insert_fills(sqlite_engine, [("SPY", "sell", 1, 501, datetime(2024, 7, 4, 20, 15, tzinfo=ny))], first_id=2)
        late = tick(datetime(2024, 7, 5, 18, tzinfo=ny))
        assert [(r.partition_key, r.run_key) for r in late] == [
            ("2024-07-04", "tradenote_export:2024-07-04:1-late"), ("2024-07-05", "tradenote_export:2024-07-05")]


class _RejectingTradeNote(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_rejected_upload_publishes_alerts_and_fails_the_run(tmp_path, data_dir, sqlite_engine, make_resources, redis_client):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingTradeNote)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = write_config(tmp_path, data_dir, trading={"tradenote_url": f"http://127.0.0.1:{server.server_address[1]}",
                                                       "tradenote_api_key": "tn-key-654321"})
    _insert_fills(sqlite_engine, [("AAPL", "buy", 10, 10, at(15)), ("AAPL", "sell", 10, 11, at(16))])
    try:
        with dg.instance_for_test() as instance:
            result = dg.materialize([tradenote_export], resources=make_resources(config=config), partition_key="2024-03-05",
                                    instance=instance, raise_on_error=False)
    finally:
        server.shutdown()
    assert not result.success
    assert (data_dir / "exports" / "tradenote" / "tradenote_2024-03-05.csv").exists()  # the file is kept for a retry
    published = json.loads(redis_client.get("maintenance:result:tradenote_export"))
    assert published["status"] == "failed" and published["run_id"] == result.run_id
    alerts = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
    assert [a["key"] for a in alerts] == ["tradenote:upload_failed"]
    assert "tn-key-654321" not in json.dumps(published) + json.dumps(alerts)
