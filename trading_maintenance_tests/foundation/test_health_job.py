"""The health check job in-process against real Redis and PostgreSQL, and with Redis stopped."""

import json
import socket
import time

import dagster as dg

from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.demo.services import start_demo_services
from trading_maintenance.resources import AlertsResource, PlatformServicesResource, RedisResource
from trading_maintenance_tests.conftest import run_asset_job, write_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _materialization(instance):
    record = instance.fetch_materializations(dg.AssetKey("system_health"), limit=1).records[0]
    return record.asset_materialization.metadata


def test_health_job_against_real_redis_and_postgres(make_resources, pg_url, redis_client):
    port = _free_port()
    servers = start_demo_services({"data_collector": f"http://127.0.0.1:{port}/health"})
    try:
        resources = make_resources(
            database_url=pg_url,
            platform_services=PlatformServicesResource(endpoints={"data_collector": f"http://127.0.0.1:{port}/health"}),
        )
        with dg.instance_for_test() as instance:
            result = run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance)
            assert result.success
            output = result.output_for_node("check_system_health")
            metadata = _materialization(instance)
    finally:
        for server in servers:
            server.shutdown()
    components = {c["name"]: c for c in output["components"]}
    assert components["redis"]["status"] == "green" and components["redis"]["value"] is not None
    assert components["database"]["status"] in ("green", "yellow") and output["database_query_ms"] is not None
    assert components["services"]["status"] == "green"
    assert 0 <= output["score"] <= 100
    assert metadata["health_score"].value == output["score"]
    stored = json.loads(redis_client.get("maintenance:result:system_health_check"))
    assert stored["score"] == output["score"] and stored["run_id"] == result.run_id
    history = [json.loads(x) for x in redis_client.lrange("maintenance:history", 0, -1)]
    assert history[0]["task"] == "system_health_check"
    assert redis_client.zcard("maintenance:metrics:cpu") == 1


def test_health_job_with_redis_stopped_scores_lower_and_names_redis(make_resources, data_dir):
    healthy = make_resources()
    stopped = make_resources(redis=RedisResource(url=f"redis://127.0.0.1:{_free_port()}/0", data_dir=str(data_dir), socket_timeout_seconds=0.5))
    with dg.instance_for_test() as instance:
        good = run_asset_job(system_health_check_job, [check_system_health], resources=healthy, instance=instance).output_for_node("check_system_health")
        result = run_asset_job(system_health_check_job, [check_system_health], resources=stopped, instance=instance)
        assert result.success  # the check itself did its job: it found Redis down
        bad = result.output_for_node("check_system_health")
        metadata = _materialization(instance)
    # The capped score can already sit at the red cap on a loaded machine; the weighted score always drops.
    assert bad["weighted_score"] < good["weighted_score"] and bad["score"] <= good["score"]
    assert bad["health_status"] == "red"
    assert {c["name"]: c["status"] for c in bad["components"]}["redis"] == "red"
    assert any("redis unreachable" in reason for reason in bad["reasons"])
    assert metadata["published_to_redis"].value is False


def test_sustained_cpu_alert_needs_samples_spanning_the_window(tmp_path, make_resources, data_dir, redis_client):
    # A threshold every machine exceeds: the first sample alone must not alert, a 5-minute history must.
    config = write_config(tmp_path, data_dir, maintenance={"alerts": {"cpu": 0.001, "cpu_sample_seconds": 0.1}})
    resources = make_resources(config=config)
    with dg.instance_for_test() as instance:
        first = run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance).output_for_node("check_system_health")
        cpu = {c["name"]: c for c in first["components"]}["cpu"]
        assert cpu["status"] == "green" and "not sustained" in cpu["reason"]
        now = time.time()
        redis_client.zadd("maintenance:metrics:cpu", {f"{now - 330:.3f}:50.0": now - 330, f"{now - 160:.3f}:60.0": now - 160})
        second = run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance).output_for_node("check_system_health")
    cpu = {c["name"]: c for c in second["components"]}["cpu"]
    assert cpu["status"] in ("yellow", "red") and "sustained 5 min" in cpu["reason"]
    assert second["cpu_sustained"] is True
    alerts = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
    expected = "critical" if cpu["status"] == "red" else "warning"
    assert any(a["key"] == "health:cpu" and a["severity"] == expected for a in alerts)


def test_alert_cooldown_suppresses_repeat(tmp_path, make_resources, data_dir, redis_client):
    config = write_config(tmp_path, data_dir, services=[{"name": "risk_manager", "url": f"http://127.0.0.1:{_free_port()}/health"}])
    resources = make_resources(config=config, alerts=AlertsResource(data_dir=str(data_dir), cooldown_minutes=30))
    resources["platform_services"] = PlatformServicesResource(endpoints={"risk_manager": f"http://127.0.0.1:{_free_port()}/health"})
    with dg.instance_for_test() as instance:
        run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance)
        run_asset_job(system_health_check_job, [check_system_health], resources=resources, instance=instance)
    alerts = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
    assert [a["key"] for a in alerts].count("health:services") == 1


def test_demo_services_leave_a_taken_port_to_what_answers_there():
    port = _free_port()
    first = start_demo_services({"a": f"http://127.0.0.1:{port}/health"})
    busy = []
    try:
        second = start_demo_services({"a": f"http://127.0.0.1:{port}/health"}, busy)
        assert second == [] and busy == [f"http://127.0.0.1:{port}/health"]
    finally:
        for server in first:
            server.shutdown()


def test_market_data_age_reads_only_recent_day_files(tmp_path):
    import os as _os

    from trading_maintenance.defs.health.collect import newest_market_data_age_minutes

    root = tmp_path / "market_data"
    now = 1_795_000_000.0  # 2026-11-18 in New York
    old = root / "AAPL" / "1min" / "2026-10-01.parquet"
    fresh = root / "MSFT" / "1min" / "2026-11-18.parquet"
    for path, mtime in ((old, now - 60), (fresh, now - 600)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        _os.utime(path, (mtime, mtime))
    # the October file was touched a minute ago, but only today's names count as the collector's output
    assert newest_market_data_age_minutes(root, now) == 10.0
    fresh.unlink()
    assert newest_market_data_age_minutes(root, now) is None
    assert newest_market_data_age_minutes(tmp_path / "missing", now) is None


def test_service_urls_with_credentials_are_masked():
    services = PlatformServicesResource(endpoints={"s": f"http://user:pw-secret@127.0.0.1:{_free_port()}/health"}, timeout_seconds=0.5)
    [result] = services.check_all()
    assert "pw-secret" not in result.url and not result.reachable
