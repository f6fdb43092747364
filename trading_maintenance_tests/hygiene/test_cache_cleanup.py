"""Cache cleanup against the real Redis (and the real PostgreSQL for final orders)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import insert

from trading_maintenance.core.hygiene import cache as cc
from trading_maintenance.core.trading.schema import orders
from trading_maintenance.defs.hygiene.cache_cleanup import cache_cleanup_job
from trading_maintenance.resources import TradingDatabaseResource
from trading_maintenance.settings import SettingsError, load_settings
from trading_maintenance_tests.conftest import write_config

FIVE_TYPES = {
    "price_cache:AAPL": "string",
    "screener_cache:momentum": "hash",
    "cache:recent_trades": "list",
    "temp:symbols": "set",
    "session:ranks": "zset",
}
PROTECTED = ["trading:emergency_stop", "config:risk", "circuit:alpaca", "positions:AAPL", "portfolio:cash_balance", "active_tickers"]


def _plant_five(r, suffix: str = "") -> None:
    r.set("price_cache:AAPL" + suffix, "189.5")
    r.hset("screener_cache:momentum" + suffix, mapping={"a": 1})
    r.rpush("cache:recent_trades" + suffix, "t1", "t2")
    r.sadd("temp:symbols" + suffix, "AAPL")
    r.zadd("session:ranks" + suffix, {"AAPL": 1.0})


def _plant_world(r) -> None:
    _plant_five(r)
    r.set("cache:with_ttl", "x", ex=500)
    r.xadd("cache:events", {"k": "v"})  # a stream: unexpected type in a cache namespace
    r.set("trading:emergency_stop", "0")
    r.hset("config:risk", mapping={"max": 5})
    r.set("circuit:alpaca", "closed")
    r.hset("positions:AAPL", mapping={"quantity": 10, "side": "long"})
    r.set("portfolio:cash_balance", "1000.00")
    r.sadd("active_tickers", "AAPL", "MSFT")
    r.set("ticker_last_seen:AAPL", "2026-01-02T10:00:00-05:00")
    r.set("ticker_last_seen:TSLA", "2026-01-02T10:00:00-05:00")  # orphan
    r.hset("ticker_last_seen:GME", mapping={"bad": 1})  # wrong type
    for cid in ("co-filled", "co-open", "co-unknown"):
        r.hset(f"orders:pending:{cid}", mapping={"symbol": "AAPL", "status": "submitted"})
    r.set("orders:pending:co-cancelled", "not a hash")  # wrong type, final in DB: still skipped


def _seed_orders(pg_url: str) -> None:
    db = TradingDatabaseResource(url=pg_url)
    db.ensure_schema()
    now = datetime.now(timezone.utc)
    rows = [("co-filled", "filled"), ("co-open", "submitted"), ("co-cancelled", "cancelled")]
    with db.get_engine().begin() as conn:
        conn.execute(
            insert(orders),
            [
                {
                    "client_order_id": cid,
                    "symbol": "AAPL",
                    "side": "buy",
                    "order_type": "market",
                    "quantity": 1,
                    "status": st,
                    "created_at": now,
                    "updated_at": now,
                }
                for cid, st in rows
            ],
        )


def test_cache_cleanup_job_against_real_redis_and_postgres(tmp_path, data_dir, redis_client, pg_url, run_job):
    # default idle limit (7 days); the idle keys are restored with an idle time of 8 days
    config = write_config(tmp_path, data_dir, hygiene={"cache_default_ttl_seconds": 777})
    r = redis_client
    _plant_five(r, ":idle")
    for key in FIVE_TYPES:
        r.restore(key + ":idle", 0, r.dump(key + ":idle"), replace=True, idletime=8 * 86400)
    r.set("ticker_last_seen:MSFT", "x")
    _plant_world(r)
    _seed_orders(pg_url)
    protected_before = {k: r.dump(k) for k in PROTECTED + ["ticker_last_seen:AAPL", "cache:events", "ticker_last_seen:GME"]}

    dry = run_job(cache_cleanup_job, database_url=pg_url, config=config, run_config={"ops": {"clean_redis_caches": {"config": {"dry_run": True}}}})
    assert dry.success
    out = dry.output_for_node("clean_redis_caches")
    assert (out["planned_ttl_set"], out["planned_idle_deleted"], out["planned_orphans_deleted"]) == (5, 5, 1)
    assert (out["ttl_set"], out["idle_deleted"], out["orphans_deleted"]) == (0, 0, 0)
    assert all(r.ttl(k) == -1 for k in FIVE_TYPES) and all(r.exists(k + ":idle") for k in FIVE_TYPES)
    assert r.exists("ticker_last_seen:TSLA") and r.exists("orders:pending:co-filled")

    real = run_job(cache_cleanup_job, database_url=pg_url, config=config)
    assert real.success, real.all_events
    out = real.output_for_node("clean_redis_caches")
    assert (out["ttl_set"], out["idle_deleted"], out["orphans_deleted"]) == (5, 5, 1)
    for key, key_type in FIVE_TYPES.items():
        assert r.type(key).decode() == key_type
        assert 0 < r.ttl(key) <= 777
        assert not r.exists(key + ":idle")
    assert 0 < r.ttl("cache:with_ttl") <= 500
    assert not r.exists("ticker_last_seen:TSLA")
    assert [f["key"] for f in out["findings"]] == ["orders:pending:co-filled"] and "filled in the database" in out["findings"][0]["reason"]
    for kept in ("orders:pending:co-filled", "orders:pending:co-open", "orders:pending:co-unknown", "orders:pending:co-cancelled", "ticker_last_seen:MSFT"):
        assert r.exists(kept), kept
    for key, dumped in protected_before.items():
        assert r.dump(key) == dumped and r.ttl(key) == -1, key
    skipped = {s["key"]: s["reason"] for s in out["skipped"]}
    assert "unexpected type stream" in skipped["cache:events"]
    assert "expected string" in skipped["ticker_last_seen:GME"]
    assert "expected hash" in skipped["orders:pending:co-cancelled"]
    assert out["used_memory_before"] > 0 and out["used_memory_after"] > 0
    published = json.loads(r.get("maintenance:result:cache_cleanup"))
    assert published["status"] == "success" and published["ttl_set"] == 5 and published["dry_run"] is False

    rerun = run_job(cache_cleanup_job, database_url=pg_url, config=config)
    out = rerun.output_for_node("clean_redis_caches")
    assert (out["ttl_set"], out["idle_deleted"], out["orphans_deleted"]) == (0, 0, 0)


def test_missing_active_tickers_disables_orphan_rule(redis_client):
    r = redis_client
    r.set("ticker_last_seen:AAPL", "x")
    plan = cc.plan_cache_cleanup(r, ["cache:"], 60, 10_000, 100, None)
    assert plan.actions == [] and any("active_tickers does not exist" in m for m in plan.rules_disabled)
    r.set("active_tickers", "AAPL")  # wrong type
    plan = cc.plan_cache_cleanup(r, ["cache:"], 60, 10_000, 100, None)
    assert plan.actions == [] and any("not a set" in m for m in plan.rules_disabled)


def test_apply_rechecks_each_key(redis_client):
    r = redis_client
    r.set("cache:a", "1")
    r.set("cache:b", "1")
    r.sadd("active_tickers", "AAPL")
    r.set("ticker_last_seen:NVDA", "x")
    plan = cc.plan_cache_cleanup(r, ["cache:"], 60, 10_000, 100, None)
    assert plan.count("set_ttl") == 2 and plan.count("delete_orphan") == 1
    r.expire("cache:a", 5000)  # a writer set its own TTL meanwhile
    r.sadd("active_tickers", "NVDA")  # the ticker became active meanwhile
    outcome = cc.apply_cache_plan(r, plan)
    assert [a.key for a in outcome.applied] == ["cache:b"]
    assert r.ttl("cache:a") > 60 and r.exists("ticker_last_seen:NVDA")
    assert len(outcome.unchanged) == 2


def test_pending_order_final_in_the_database_is_reported_never_deleted(redis_client):
    r = redis_client
    r.hset("orders:pending:co-filled", mapping={"symbol": "AAPL", "status": "submitted"})
    r.hset("orders:pending:co-open", mapping={"symbol": "MSFT", "status": "submitted"})
    r.hset("orders:pending:co-unknown", mapping={"symbol": "NVDA", "status": "submitted"})
    statuses = {"co-filled": "filled", "co-open": "submitted"}
    before = {k: r.dump(k) for k in r.scan_iter(match="orders:pending:*")}
    plan = cc.plan_cache_cleanup(r, ["cache:"], 60, 10_000, 100, lambda ids: {i: statuses[i] for i in ids if i in statuses})
    assert plan.actions == []
    assert [f["key"] for f in plan.findings] == ["orders:pending:co-filled"]
    assert "co-filled is filled in the database" in plan.findings[0]["reason"] and "reported only" in plan.findings[0]["reason"]
    outcome = cc.apply_cache_plan(r, plan)
    assert outcome.applied == [] and outcome.failed == []
    forged = cc.CachePlan(actions=[cc.KeyAction("orders:pending:co-filled", "delete_orphan", "hash", "orders_pending", "forged")])
    outcome = cc.apply_cache_plan(r, forged)
    assert outcome.applied == [] and "protected key" in outcome.failed[0]["reason"]
    assert {k: r.dump(k) for k in r.scan_iter(match="orders:pending:*")} == before
    assert all(r.ttl(k) == -1 for k in before)


OVERLAPPING_NAMESPACES = ["", "*", "p*", "pos?tions:*", "[po]*", "positions", "orders:", "portfolio:", "[a-c]ctive_tickers",
                          "config:", "circ", "trading:", "maintenance:", "?", "[^x]*", "rate_limit:"]


@pytest.mark.parametrize("namespace", OVERLAPPING_NAMESPACES)
def test_namespace_overlapping_protected_keys_is_refused_by_settings(tmp_path, data_dir, namespace):
    config = write_config(tmp_path, data_dir, hygiene={"cache_namespaces": ["price_cache:", namespace]})
    with pytest.raises(SettingsError) as info:
        load_settings(config, environ={})
    message = str(info.value)
    assert "hygiene.cache_namespaces" in message and f"[1] {namespace!r} overlaps protected keys" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("namespace", ["price_cache:", "cache:", "temp:", "session:", "screener_cache:", "ticker_cache:", "po\\*", "trading:x", "x*"])
def test_namespace_clear_of_protected_keys_is_accepted(tmp_path, data_dir, namespace):
    config = write_config(tmp_path, data_dir, hygiene={"cache_namespaces": [namespace]})
    assert load_settings(config, environ={}).hygiene.cache_namespaces == [namespace]


def test_glob_overlap_gives_a_key_matching_both():
    assert cc.glob_overlap("pos?tions:*", "positions:*") == "positions:"
    assert cc.glob_overlap("[a-c]x", "[b-z]?") == "bx"
    assert cc.glob_overlap("[^p]*", "positions:*") is None
    assert cc.glob_overlap("a\\*b", "a?b") == "a*b"


def test_cleanup_refuses_protected_keys_when_settings_are_bypassed(redis_client):
    r = redis_client
    r.hset("positions:AAPL", mapping={"quantity": 10})
    r.hset("orders:pending:co-1", mapping={"status": "submitted"})
    r.set("portfolio:cash_balance", "1000")
    r.set("config:x", "1")
    r.set("price_cache:AAPL", "1")
    namespaces = ["positions:", "orders:", "p", "", "*", "config:", "price_cache:"]
    plan = cc.plan_cache_cleanup(r, namespaces, 60, 0, 100, None)
    assert [a.key for a in plan.actions] == ["price_cache:AAPL"]
    assert len(plan.refused_namespaces) == 6 and "'positions:*'" in plan.refused_namespaces[0]
    forged = cc.CachePlan(actions=[cc.KeyAction(k, "delete_idle", "hash", "cache:", "forged") for k in ("positions:AAPL", "orders:pending:co-1")])
    outcome = cc.apply_cache_plan(r, forged)
    assert outcome.applied == [] and len(outcome.failed) == 2
    assert r.exists("positions:AAPL") and r.exists("orders:pending:co-1") and r.ttl("positions:AAPL") == -1
    assert r.ttl("portfolio:cash_balance") == -1 and r.ttl("config:x") == -1


def test_cache_cleanup_job_with_bypassed_settings_fails_and_touches_nothing(tmp_path, data_dir, redis_client, run_job, monkeypatch):
    from trading_maintenance.resources import settings as settings_resource

    r = redis_client
    r.hset("positions:AAPL", mapping={"quantity": 10})
    r.set("price_cache:AAPL", "1")
    real_load = settings_resource.load_settings

    def bypassed(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        hygiene = loaded.hygiene.model_copy(update={"cache_namespaces": ["price_cache:", "positions:"]})  # no validation
        return loaded.model_copy(update={"hygiene": hygiene})

    monkeypatch.setattr(settings_resource, "load_settings", bypassed)
    result = run_job(cache_cleanup_job, config=write_config(tmp_path, data_dir))
    assert not result.success
    published = json.loads(r.get("maintenance:result:cache_cleanup"))
    assert any("positions:" in f for f in published["failures"])
    assert r.ttl("positions:AAPL") == -1 and 0 < r.ttl("price_cache:AAPL")


def test_should_purge_rules():
    base = {"mem_allocator": "jemalloc-5.3.0", "used_memory": 100 * 2**20, "used_memory_rss": 300 * 2**20, "mem_fragmentation_ratio": 3.0}
    assert cc.should_purge(base, 1.5, 2**20)[0]
    assert not cc.should_purge({**base, "mem_fragmentation_ratio": 1.4}, 1.5, 2**20)[0]
    assert not cc.should_purge({**base, "used_memory_rss": 100 * 2**20 + 10}, 1.5, 2**20)[0]
    assert not cc.should_purge({**base, "mem_allocator": "libc"}, 1.5, 2**20)[0]
