"""Reconciliation against the local Alpaca-compatible server, real Redis and the real SQLite/PostgreSQL DB."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, update

from trading_maintenance.core.reconciliation.compare import PortfolioView, Position, Tolerances, compare_positions, normalize_symbols
from trading_maintenance.core.trading import schema as ts
from trading_maintenance.core.trading.instruments import canonical_symbol
from trading_maintenance.defs.reconciliation.ops import portfolio_reconciliation_job, reconcile_portfolio
from trading_maintenance.demo.broker_server import broker_state_from_db
from trading_maintenance.resources.broker import AlpacaClient, BrokerError
from trading_maintenance_tests.conftest import run_asset_job

from .conftest import API_KEY, SECRET_KEY, seed_consistent, seed_redis_consistent


def _redis_snapshot(client) -> dict:
    out = {}
    for key in sorted(client.scan_iter("*")):
        name = key.decode()
        if name.startswith("maintenance:"):
            continue
        kind = client.type(key).decode()
        out[name] = client.hgetall(key) if kind == "hash" else client.get(key) if kind == "string" else kind
    return out


def _db_counts(engine) -> dict:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (ts.orders, ts.fills, ts.positions, ts.daily_performance)}


def _run(make_resources, broker_resource, **config):
    return run_asset_job(portfolio_reconciliation_job, [reconcile_portfolio],
        resources=make_resources(broker=broker_resource),
        run_config={"ops": {"reconcile_portfolio": {"config": config}}},
        raise_on_error=False,
    )


def _published(redis_client) -> dict:
    return json.loads(redis_client.get("maintenance:result:portfolio_reconciliation"))


def test_consistent_views_report_nothing(seeded, make_resources, broker_resource, redis_client, data_dir):
    result = _run(make_resources, broker_resource)
    assert result.success
    published = _published(redis_client)
    assert published["status"] == "success"
    assert published["discrepancies"] == []
    assert published["broker_positions"] == 3 and published["database_positions"] == 3 and published["redis_positions"] == 3
    assert published["broker_fills"] == 2
    reports = list((data_dir / "reports" / "reconciliation").glob("reconciliation_*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["status"] == "success"


def plant_everything(engine, redis_client, server, now):
    state = broker_state_from_db(engine, now)
    # positions
    redis_client.hset("positions:AAPL", "quantity", "90")  # quantity mismatch in Redis
    redis_client.hset("positions:TSLA", "side", "long")  # side mismatch in Redis
    state["positions"].append({"symbol": "NVDA", "qty": "5", "side": "long", "avg_entry_price": "800", "market_value": "4000"})
    for p in state["positions"]:
        if p["symbol"] == "BRK.B":
            p["avg_entry_price"] = "410.50"  # 0.12 % off both views
    # cash
    redis_client.set("portfolio:cash_balance", "49000")
    with engine.begin() as conn:
        conn.execute(insert(ts.positions).values(ticker="AMD", side="long", quantity=7, entry_price=100, entry_time=now, status="open"))
        # stuck: pending for 10 days, never sent
        conn.execute(insert(ts.orders).values(client_order_id="c-4", symbol="IBM", side="buy", order_type="market", quantity=1,
                                              status="pending", submitted_at=now - timedelta(days=10),
                                              created_at=now - timedelta(days=10), updated_at=now))
        # vanished: the broker no longer lists b-5 as open
        conn.execute(insert(ts.orders).values(client_order_id="c-5", broker_order_id="b-5", symbol="META", side="sell",
                                              order_type="limit", quantity=3, status="submitted", submitted_at=now - timedelta(minutes=1),
                                              created_at=now, updated_at=now))
        conn.execute(insert(ts.fills).values(order_id=9, trade_id="f-4", symbol="AAPL", side="buy", quantity=1, price=151,
                                             timestamp=now - timedelta(days=1)))  # unknown to the broker
    redis_client.hset("orders:pending:c-9", mapping={"symbol": "GOOG", "side": "buy", "quantity": "2", "status": "pending",
                                                     "submitted_at": (now - timedelta(days=10)).isoformat()})
    state["orders"].append({"id": "b-99", "client_order_id": "ext-1", "symbol": "QQQ", "side": "buy", "qty": "1",
                            "status": "new", "submitted_at": now.isoformat().replace("+00:00", "Z")})
    acts = state["activities"]
    acts[0]["price"] = "150.30"  # f-1 price
    acts[1]["qty"] = "19"  # f-2 quantity
    acts.append({"id": "20990101::f-3", "activity_type": "FILL", "transaction_time": (now - timedelta(hours=3)).isoformat(),
                 "symbol": "NVDA", "side": "buy", "qty": "5", "price": "800"})
    server.set_state(state)


EXPECTED = {
    ("position", "quantity_mismatch", "redis", "AAPL"),
    ("position", "side_mismatch", "redis", "TSLA"),
    ("position", "missing", "database", "NVDA"),
    ("position", "missing", "redis", "NVDA"),
    ("position", "unexpected", "database", "AMD"),
    ("position", "avg_price_mismatch", "database", "BRK.B"),
    ("position", "avg_price_mismatch", "redis", "BRK.B"),
    ("cash", "cash_mismatch", "redis", ""),
    ("stuck_order", "stuck", "database", "IBM"),
    ("stuck_order", "stuck", "redis", "GOOG"),
    ("orphaned_order", "orphaned", "database", "QQQ"),
    ("vanished_order", "vanished", "database", "META"),
    ("fill", "price_mismatch", "database", "AAPL"),
    ("fill", "quantity_mismatch", "database", "TSLA"),
    ("fill", "missing", "database", "NVDA"),
    ("fill", "unexpected", "database", "AAPL"),
}


def test_every_planted_discrepancy_found_nothing_else_nothing_changed(seeded, make_resources, broker_resource, broker_server,
                                                                      redis_client):
    now = datetime.now(timezone.utc)
    plant_everything(seeded, redis_client, broker_server, now)
    redis_before, db_before = _redis_snapshot(redis_client), _db_counts(seeded)

    result = _run(make_resources, broker_resource)

    assert not result.success  # critical discrepancies fail the run
    published = _published(redis_client)
    found = {(d["check"], d["kind"], d["view"], d["symbol"]) for d in published["discrepancies"]}
    assert found == EXPECTED
    assert published["status"] == "failed" and published["critical_count"] > 0
    severities = {(d["check"], d["severity"]) for d in published["discrepancies"]}
    assert ("stuck_order", "warning") in severities and ("position", "critical") in severities
    # nothing changed anywhere without apply_fixes, and only GETs reached the broker
    assert _redis_snapshot(redis_client) == redis_before
    assert _db_counts(seeded) == db_before
    assert {method for method, _ in broker_server.requests} == {"GET"}
    alerts = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
    assert any(a["key"] == "reconciliation:critical" for a in alerts)


def test_apply_fixes_refreshes_only_redis_from_the_broker(seeded, make_resources, broker_resource, broker_server, redis_client):
    redis_client.hset("positions:AAPL", "quantity", "90")
    redis_client.hset("positions:ZZZ", mapping={"quantity": "3", "side": "long", "avg_entry_price": "1"})
    redis_client.set("portfolio:cash_balance", "1")
    redis_client.set("positions:BAD", "not-a-hash")  # wrong type: reported, skipped, never touched
    db_before = _db_counts(seeded)

    dry = _run(make_resources, broker_resource, apply_fixes=True, dry_run=True)
    assert not dry.success
    assert redis_client.hget("positions:AAPL", "quantity") == b"90"
    assert any(c.startswith("would set_position positions:AAPL") for c in _published(redis_client)["redis_changes"])

    result = _run(make_resources, broker_resource, apply_fixes=True)
    published = _published(redis_client)
    assert not result.success  # the discrepancies were real; they are reported even when repaired
    assert redis_client.hget("positions:AAPL", "quantity") == b"100"
    assert not redis_client.exists("positions:ZZZ")
    assert redis_client.get("portfolio:cash_balance") == b"50000"
    assert redis_client.get("positions:BAD") == b"not-a-hash"
    assert any("positions:BAD" in p for p in published["problems"])
    assert len(published["redis_changes"]) == 3
    assert _db_counts(seeded) == db_before
    assert {method for method, _ in broker_server.requests} == {"GET"}

    again = _run(make_resources, broker_resource)
    assert again.success
    assert _published(redis_client)["discrepancies"] == []


@pytest.mark.parametrize("fault", ["http_500", "timeout"])
def test_broker_failure_is_an_error_never_flat(seeded, make_resources, broker_resource, broker_server, redis_client, fault):
    if fault == "http_500":
        broker_server.add_fault(status=500, times=100)
    else:
        broker_server.add_fault(delay_seconds=1.5, times=100)
    before = _redis_snapshot(redis_client)
    result = _run(make_resources, broker_resource.model_copy(update={"timeout_seconds": 0.3}), apply_fixes=True)
    assert not result.success
    published = _published(redis_client)
    assert published["status"] == "failed"
    assert published["discrepancies"] == []  # nothing reported as "missing at the broker"
    assert ("HTTP 500" if fault == "http_500" else "timed out") in published["error"]
    assert len(broker_server.requests) == 3  # 1 try + 2 retries
    assert _redis_snapshot(redis_client) == before
    assert SECRET_KEY not in json.dumps(published) and API_KEY not in json.dumps(published)


def test_client_retries_429_and_paginates_fills(broker_server):
    state = broker_server.state
    state["activities"] = [{"id": f"2024{i:06d}::t{i}", "activity_type": "FILL", "transaction_time": f"2024-03-01T15:{i // 60:02d}:{i % 60:02d}Z",
                            "symbol": "AAPL", "side": "buy", "qty": "1", "price": "1"} for i in range(250)]
    broker_server.add_fault(status=429, times=2)
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1, backoff_seconds=0.01) as client:
        fills = client.get_fill_activities()
        assert [f["id"] for f in fills] == [a["id"] for a in state["activities"]]
        assert client.requests_made == 5  # 2 x 429, then 3 pages of 100/100/50


def test_broker_errors_mask_secrets(broker_server):
    with AlpacaClient(broker_server.url, API_KEY, "wrong-" + SECRET_KEY, timeout_seconds=1) as client:
        with pytest.raises(BrokerError) as info:
            client.get_account()
    assert info.value.status == 401 and SECRET_KEY not in str(info.value)
    with AlpacaClient(f"http://user:{SECRET_KEY}@127.0.0.1:9", API_KEY, SECRET_KEY, timeout_seconds=0.2, max_retries=1,
                      backoff_seconds=0.01) as client:
        with pytest.raises(BrokerError) as info:
            client.get_positions()
    assert SECRET_KEY not in str(info.value) and "failed after 2 attempts" in str(info.value)


def test_position_rule_true_and_false_positive():
    tol = Tolerances()
    broker = PortfolioView("broker", {"X": Position("X", Decimal(10), Decimal("100.00"))})
    within = PortfolioView("redis", {"X": Position("X", Decimal(10), Decimal("100.009"))})  # 0.009 % < 0.01 %
    beyond = PortfolioView("redis", {"X": Position("X", Decimal(10), Decimal("100.02"))})
    assert compare_positions(broker, within, tol) == []
    assert [d.kind for d in compare_positions(broker, beyond, tol)] == ["avg_price_mismatch"]


def test_reconciliation_on_postgresql(pg_url, make_resources, broker_resource, broker_server, redis_client):
    from trading_maintenance.resources.database import database_engine

    now = datetime.now(timezone.utc)
    engine = database_engine(pg_url, "")
    seed_consistent(engine, now)
    seed_redis_consistent(redis_client)
    broker_server.set_state(broker_state_from_db(engine, now))
    with engine.begin() as conn:
        conn.execute(update(ts.positions).where(ts.positions.c.ticker == "AAPL").values(quantity=99))
    result = run_asset_job(portfolio_reconciliation_job, [reconcile_portfolio],
        resources=make_resources(database_url=pg_url, broker=broker_resource), raise_on_error=False)
    assert not result.success
    found = {(d["check"], d["kind"], d["view"], d["symbol"]) for d in _published(redis_client)["discrepancies"]}
    assert found == {("position", "quantity_mismatch", "database", "AAPL")}


def _fill_activities(n: int, start: datetime = datetime(2024, 3, 1, 15, tzinfo=timezone.utc)) -> list[dict]:
    return [{"id": f"2024{i:06d}::t{i}", "activity_type": "FILL", "transaction_time": (start + timedelta(seconds=i)).isoformat(),
             "symbol": "AAPL", "side": "buy", "qty": "1", "price": "1"} for i in range(n)]


def test_answer_dripping_bytes_fails_at_the_request_deadline(broker_server):
    broker_server.add_fault(drip_seconds_per_byte=0.05, times=5, path_prefix="/v2/account")  # each read is quick, the whole is slow
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1, max_retries=1, backoff_seconds=0.01,
                      request_deadline_seconds=0.4) as client:
        with pytest.raises(BrokerError) as info:
            client.get_account()
    assert "the whole request took longer than 0.4s" in str(info.value) and "failed after 2 attempts" in str(info.value)


def test_endless_pagination_fails_at_the_page_limit_and_the_read_deadline(broker_server):
    broker_server.state["activities"] = _fill_activities(5)
    broker_server.pagination = "endless"
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1) as client:
        with pytest.raises(BrokerError) as info:
            client.get_fill_activities(max_pages=7)
    assert "more than 7 pages" in str(info.value) and client.requests_made == 7
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1, read_deadline_seconds=0.3) as client:
        with pytest.raises(BrokerError) as info:
            client.get_fill_activities()
    assert "exceeded its deadline of 0.3s" in str(info.value)


def test_answers_beyond_the_size_limit_are_refused(broker_server):
    broker_server.state["activities"] = _fill_activities(100)
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1, max_response_bytes=2000) as client:
        with pytest.raises(BrokerError) as info:
            client.get_fill_activities()
    assert "answer larger than 2000 bytes" in str(info.value)


def test_repeated_page_token_is_an_error_and_fills_are_counted_once_per_id(broker_server):
    broker_server.state["activities"] = _fill_activities(100)
    broker_server.pagination = "ignore_token"  # every page token answered with the first page again
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1) as client:
        with pytest.raises(BrokerError) as info:
            client.get_fill_activities()
    assert "page_token '2024000099::t99' again" in str(info.value) and "100 distinct fills" in str(info.value)

    broker_server.pagination = "normal"
    broker_server.state["activities"] = _fill_activities(30) + _fill_activities(30)[:10]  # the broker lists ten fills twice
    with AlpacaClient(broker_server.url, API_KEY, SECRET_KEY, timeout_seconds=1) as client:
        fills = client.get_fill_activities()
    assert sorted(f["id"] for f in fills) == sorted(a["id"] for a in _fill_activities(30))


def test_reconciliation_fails_clearly_when_the_broker_repeats_a_page(seeded, make_resources, broker_resource, broker_server,
                                                                     redis_client):
    broker_server.state["activities"] = _fill_activities(100, datetime.now(timezone.utc) - timedelta(hours=1))
    broker_server.pagination = "ignore_token"
    result = _run(make_resources, broker_resource)
    assert not result.success
    published = _published(redis_client)
    assert published["status"] == "failed" and "not paginating" in published["error"]
    assert "broker_fills" not in published  # no count of a page read twice


def test_symbols_compared_in_the_brokers_spelling_and_the_mapping_reported(seeded, make_resources, broker_resource,
                                                                           broker_server, redis_client):
    now = datetime.now(timezone.utc)
    with seeded.begin() as conn:  # the database spells the share class with a dash and the pair with a slash
        conn.execute(update(ts.positions).where(ts.positions.c.ticker == "BRK.B").values(ticker="BRK-B"))
        conn.execute(insert(ts.positions).values(ticker="BTC/USD", side="long", quantity=Decimal("0.5"),
                                                 entry_price=Decimal("60000"), entry_time=now, status="open"))
    redis_client.rename("positions:BRK.B", "positions:BRK/B")
    redis_client.hset("positions:BTCUSD", mapping={"quantity": "0.5", "side": "long", "avg_entry_price": "60000"})
    state = broker_state_from_db(seeded, now)
    for position in state["positions"]:  # the broker spells them its own way: BRK.B, and BTCUSD for a crypto position
        position["symbol"] = {"BRK-B": "BRK.B", "BTC/USD": "BTCUSD"}.get(position["symbol"], position["symbol"])
    broker_server.set_state(state)

    result = _run(make_resources, broker_resource, apply_fixes=True)
    assert result.success
    published = _published(redis_client)
    assert published["discrepancies"] == [] and published["broker_positions"] == 4
    assert published["symbol_mapping"] == {"BRK-B": "BRK.B", "BRK/B": "BRK.B", "BTCUSD": "BTC/USD"}
    assert redis_client.exists("positions:BRK/B") and not redis_client.exists("positions:BRK.B")  # nothing rewritten

    redis_client.hset("positions:BRK/B", "quantity", "7")  # a real difference is still found, and fixed under its own key
    result = _run(make_resources, broker_resource, apply_fixes=True)
    found = _published(redis_client)["discrepancies"]
    assert [(d["kind"], d["symbol"], d["view"]) for d in found] == [("quantity_mismatch", "BRK.B", "redis")]
    assert redis_client.hget("positions:BRK/B", "quantity") == b"10" and not redis_client.exists("positions:BRK.B")


def test_canonical_symbols_true_and_false_positives():
    assert {canonical_symbol(s) for s in ("BRK.B", "BRK/B", "BRK-B", "brk b")} == {"BRK.B"}
    assert {canonical_symbol(s) for s in ("BTC/USD", "BTCUSD", "btc-usd")} == {"BTC/USD"}
    assert canonical_symbol("ETHUSDT") == "ETH/USDT"
    assert [canonical_symbol(s) for s in ("AAPL", "ABCUSD", "F", "SPY")] == ["AAPL", "ABCUSD", "F", "SPY"]  # left alone
    broker = PortfolioView("broker", positions={"BTCUSD": Position("BTCUSD", Decimal(1))})
    db = PortfolioView("database", positions={"BTC/USD": Position("BTC/USD", Decimal(1))})
    assert normalize_symbols(broker, db) == {"BTCUSD": "BTC/USD"}
    assert compare_positions(broker, db, Tolerances()) == []
