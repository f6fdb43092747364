"""API rate-limit archive and reset against the real Redis: once per day, no call lost."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta

import redis

from trading_maintenance.core.hygiene import rate_limits as rl
from trading_maintenance.defs.hygiene.api_rate_limit_reset import api_rate_limit_job


def _cfg(today: str, dry_run: bool = False) -> dict:
    return {"ops": {"reset_api_rate_limits": {"config": {"today": today, "dry_run": dry_run}}}}


def test_reset_twice_on_one_day_resets_once(redis_client, run_job):
    r = redis_client
    r.set("rate_limit:alpaca:daily", 150)
    r.set("rate_limit:alpaca:limit", 200)
    r.set("rate_limit:polygon:daily", 990)
    r.set("rate_limit:polygon:limit", 1000)
    r.hset("rate_limit:broken:daily", mapping={"x": 1})  # wrong type: reported, skipped
    r.set("rate_limit:garbage:daily", "abc")  # not an integer: reported, skipped

    dry = run_job(api_rate_limit_job, run_config=_cfg("2026-03-10", dry_run=True))
    assert dry.success
    assert dry.output_for_node("reset_api_rate_limits")["counters_reset"] == 0
    assert r.get("rate_limit:alpaca:daily") == b"150" and not r.exists("rate_limit:alpaca:history")

    first = run_job(api_rate_limit_job, run_config=_cfg("2026-03-10"))
    assert first.success
    out = first.output_for_node("reset_api_rate_limits")
    assert (out["apis"], out["counters_reset"], out["skipped"], out["archived_day"]) == (4, 2, 2, "2026-03-09")
    assert r.get("rate_limit:alpaca:daily") == b"0" and r.get("rate_limit:alpaca:limit") == b"200"
    record = json.loads(r.hget("rate_limit:alpaca:history", "2026-03-09"))
    assert (record["used"], record["limit"]) == (150, 200)
    assert r.hgetall("rate_limit:broken:daily") == {b"x": b"1"} and r.get("rate_limit:garbage:daily") == b"abc"

    r.incrby("rate_limit:alpaca:daily", 7)  # calls made after midnight belong to today
    second = run_job(api_rate_limit_job, run_config=_cfg("2026-03-10"))
    assert second.success
    out = second.output_for_node("reset_api_rate_limits")
    assert (out["counters_reset"], out["already_reset_today"]) == (0, 2)
    assert r.get("rate_limit:alpaca:daily") == b"7"
    assert json.loads(r.hget("rate_limit:alpaca:history", "2026-03-09"))["used"] == 150

    published = json.loads(r.get("maintenance:result:api_rate_limit_reset"))
    assert published["status"] == "success" and published["already_reset_today"] == 2
    util = {u["api"]: u for u in out["utilisation"]}
    assert util["polygon"]["peak_share"] == 0.99 and util["polygon"]["days_above_warn"] == 1


def test_counter_incremented_during_reset_is_not_lost(redis_url, redis_client):
    r = redis_client
    r.set("rate_limit:alpaca:daily", 1000)
    increments = 3000
    stop = threading.Event()

    def hammer():
        client = redis.Redis.from_url(redis_url)
        for _ in range(increments):
            client.incr("rate_limit:alpaca:daily")
        client.close()
        stop.set()

    thread = threading.Thread(target=hammer)
    thread.start()
    day = date(2026, 3, 9)
    results = []
    while not stop.is_set():
        # each "day" is archived once, while the other client keeps counting
        results.append(rl.archive_and_reset(r, "alpaca", day, "t"))
        day += timedelta(days=1)
        time.sleep(0.003)
    thread.join()
    resets = [x for x in results if x.status == "reset"]
    assert len(resets) == len(results) >= 3  # resets interleaved with the increments
    assert sum(1 for x in resets if x.used) >= 2
    archived = sum(rec["used"] for rec in rl.read_history(r, "alpaca").values())
    assert archived + int(r.get("rate_limit:alpaca:daily")) == 1000 + increments


def test_history_pruned_beyond_window_but_kept_for_90_days(redis_client):
    r = redis_client
    today = date(2026, 6, 1)
    for age in (1, 89, 90, 119, 120, 121, 400):
        r.hset("rate_limit:x:history", (today - timedelta(days=age)).isoformat(), json.dumps({"used": 1, "limit": 10}))
    assert rl.prune_history(r, "x", today, 120, dry_run=True) == 2
    assert r.hlen("rate_limit:x:history") == 7
    assert rl.prune_history(r, "x", today, 120) == 2
    assert r.hlen("rate_limit:x:history") == 5


def test_utilisation_analysis_and_recommendations():
    today = date(2026, 6, 1)
    hist = {(today - timedelta(days=i)).isoformat(): {"used": u, "limit": 100} for i, u in enumerate([50, 85, 90, 95, 20, 10], start=1)}
    u = rl.analyse("a", hist, today)
    assert (u.days, u.peak_share, u.days_above_warn, u.days_over_quota) == (6, 0.95, 3, 0)
    assert u.mean_share == round((50 + 85 + 90 + 95 + 20 + 10) / 600, 4)
    assert "caching" in u.recommendation
    over = rl.analyse("b", {**hist, (today - timedelta(days=8)).isoformat(): {"used": 120, "limit": 100}}, today)
    assert over.days_over_quota == 1 and "exceeded" in over.recommendation
    low = rl.analyse("c", {today.isoformat(): {"used": 5, "limit": 100}}, today)
    assert "ample" in low.recommendation
    noquota = rl.analyse("d", {today.isoformat(): {"used": 5}}, today)
    assert "set rate_limit:d:limit" in noquota.recommendation
    old_only = rl.analyse("e", {(today - timedelta(days=200)).isoformat(): {"used": 5, "limit": 10}}, today)
    assert old_only.days == 0


def test_a_failed_part_fails_the_run_but_others_are_reset(redis_client, run_job):
    r = redis_client
    r.set("rate_limit:good:daily", 5)
    r.set("rate_limit:bad:daily", 9)
    r.hset("rate_limit:bad:last_reset", mapping={"x": 1})  # GET on a hash fails inside the script
    res = run_job(api_rate_limit_job, run_config=_cfg("2026-03-10"))
    assert not res.success
    assert r.get("rate_limit:good:daily") == b"0" and r.get("rate_limit:bad:daily") == b"9"
    published = json.loads(r.get("maintenance:result:api_rate_limit_reset"))
    assert published["status"] == "failed" and published["counters_reset"] == 1
    assert any(f.startswith("bad:") for f in published["failures"])
