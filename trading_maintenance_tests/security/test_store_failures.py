"""A store that is down or described wrongly: health goes red with the reason; every other job
fails with the cause in its failure message (what the CLI and the UI show), the password masked."""

import socket

import dagster as dg
import pytest

from trading_maintenance.defs.database.ops import database_maintenance_job
from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.defs.hygiene.api_rate_limit_reset import api_rate_limit_job
from trading_maintenance.defs.hygiene.cache_cleanup import cache_cleanup_job
from trading_maintenance.resources import AlpacaBrokerResource, RedisResource, TradingDatabaseResource
from trading_maintenance_tests.conftest import run_asset_job

PASSWORD = "st0re-Pa55-321"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failure_messages(result) -> list[str]:
    return [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]


@pytest.mark.parametrize(
    "store, url, reason",
    [
        ("redis", f"redis://:{PASSWORD}@127.0.0.1:notaport/0", "redis.url / REDIS_URL is not a usable Redis URL"),
        ("redis", f"http://:{PASSWORD}@127.0.0.1/0", "redis.url / REDIS_URL is not a usable Redis URL"),
        ("database", f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db", "database.url / DATABASE_URL is not a usable database URL"),
        ("database", f"postgres ql://u:{PASSWORD}@127.0.0.1/db", "database.url / DATABASE_URL is not a usable database URL"),
        ("database", "postgresql://u:{password}@127.0.0.1:{port}/db", "is unreachable"),
    ],
)
def test_health_check_goes_red_with_the_reason(make_resources, data_dir, store, url, reason):
    url = url.format(password=PASSWORD, port=_closed_port())
    override = (
        {"redis": RedisResource(url=url, data_dir=str(data_dir), socket_timeout_seconds=0.5)}
        if store == "redis"
        else {"trading_db": TradingDatabaseResource(url=url, data_dir=str(data_dir))}
    )
    with dg.instance_for_test() as instance:
        result = run_asset_job(system_health_check_job, [check_system_health],
            resources=make_resources(**override), instance=instance,
            run_config={"ops": {"check_system_health": {"config": {"send_alerts": False}}}},
        )
    assert result.success
    output = result.output_for_node("check_system_health")
    component = {c["name"]: c for c in output["components"]}[store]
    assert component["status"] == "red" and reason in component["reason"]
    assert output["health_status"] == "red"
    assert PASSWORD not in str(output)


def _redis_down(data_dir):
    return RedisResource(url=f"redis://:{PASSWORD}@127.0.0.1:{_closed_port()}/0", data_dir=str(data_dir), socket_timeout_seconds=0.5)


def _database_down(data_dir):
    return TradingDatabaseResource(url=f"postgresql://u:{PASSWORD}@127.0.0.1:{_closed_port()}/trading", data_dir=str(data_dir))


@pytest.mark.parametrize(
    "job, down, run_config",
    [
        (cache_cleanup_job, "redis", {}),
        (api_rate_limit_job, "redis", {}),
        (database_maintenance_job, "database", {"ops": {"maintain_trading_database": {"config": {"allow_during_market_hours": True}}}}),
    ],
    ids=lambda value: getattr(value, "name", None) or str(value),
)
def test_a_job_with_its_store_down_fails_with_the_cause(make_resources, data_dir, job, down, run_config):
    broker = AlpacaBrokerResource(base_url=f"http://127.0.0.1:{_closed_port()}", api_key="k", secret_key="s", max_retries=0, timeout_seconds=0.5)
    override = {"redis": _redis_down(data_dir)} if down == "redis" else {"trading_db": _database_down(data_dir)}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(resources=make_resources(broker=broker, **override), instance=instance, run_config=run_config, raise_on_error=False)
    assert not result.success
    messages = _failure_messages(result)
    assert messages, "the run failed without a step failure"
    first_line = messages[0].strip().splitlines()[0]  # what the CLI prints
    assert "Error occurred while executing" not in first_line
    assert "127.0.0.1" in first_line and "refused" in first_line, first_line
    assert all(PASSWORD not in message for message in messages)
