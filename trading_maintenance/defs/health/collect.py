"""Gathers the health measurements from the resources and turns them into components."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from sqlalchemy import text

from trading_maintenance.core.common.market_hours import is_market_open
from trading_maintenance.core.health import scoring as health
from trading_maintenance.settings import Settings

METRICS_KEY = "maintenance:metrics:{metric}"
METRICS_HORIZON_SECONDS = 3600


def record_and_read_samples(redis_client, metric: str, value: float, now: float) -> list[tuple[float, float]]:
    """Append the sample to maintenance:metrics:{metric} (a sorted set by time) and return the last hour."""
    key = METRICS_KEY.format(metric=metric)
    pipe = redis_client.pipeline()
    pipe.zadd(key, {f"{now:.3f}:{value:.2f}": now})
    pipe.zremrangebyscore(key, "-inf", now - METRICS_HORIZON_SECONDS)
    pipe.expire(key, METRICS_HORIZON_SECONDS * 2)
    pipe.zrangebyscore(key, now - METRICS_HORIZON_SECONDS, "+inf", withscores=True)
    members = pipe.execute()[-1]
    samples = []
    for member, score in members:
        try:
            samples.append((float(score), float(member.decode().split(":", 1)[1])))
        except (ValueError, IndexError, AttributeError):
            continue
    return samples


def failure_reason(exc: BaseException, known_secrets: list[str] = ()) -> str:
    """Why a store could not be used, fit for a health reason: the error's own words, masked.

    The project's store errors already name the setting and the server; anything else is shown
    with its type, and never longer than one line.
    """
    from trading_maintenance.core.common.masking import mask_text

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, dg.Failure):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return mask_text(text, known_secrets)[:300]


def probe_redis(redis_client, open_error: str = "") -> tuple[bool, float | None, dict, str]:
    if redis_client is None:
        return False, None, {}, open_error
    try:
        started = time.perf_counter()
        redis_client.ping()
        latency = (time.perf_counter() - started) * 1000
        info = redis_client.info()
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        stats = {
            "redis_used_memory_bytes": int(info.get("used_memory", 0)),
            "redis_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "redis_connected_clients": int(info.get("connected_clients", 0)),
        }
        return True, latency, stats, ""
    except Exception as exc:  # noqa: BLE001 - an unreachable store is a finding, not a crash
        return False, None, {}, failure_reason(exc)


def probe_database(engine, open_error: str = "") -> tuple[bool, float | None, float | None, str]:
    """(reachable, connect ms, query ms, error)."""
    if engine is None:
        return False, None, None, open_error
    try:
        started = time.perf_counter()
        with engine.connect() as conn:
            connected = time.perf_counter()
            conn.execute(text("SELECT 1")).scalar()
            done = time.perf_counter()
        return True, (connected - started) * 1000, (done - connected) * 1000, ""
    except Exception as exc:  # noqa: BLE001
        return False, None, None, failure_reason(exc)


def newest_market_data_age_minutes(market_data_dir: Path, now: float, days: int = 4, tz: str = "America/New_York") -> float | None:
    """Age of the most recently written daily market-data file, or None when there is none.

    Only the files of the last few trading-day names are looked at (one stat per symbol and
    timeframe and day), not the whole history: this runs every 5 minutes while the market is open.
    """
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    if not market_data_dir.is_dir():
        return None
    today = datetime.fromtimestamp(now, ZoneInfo(tz)).date()
    names = [f"{(today - timedelta(days=back)).isoformat()}.parquet" for back in range(days)]
    newest = None
    with os.scandir(market_data_dir) as symbols:
        for symbol in symbols:
            if not symbol.is_dir(follow_symlinks=False):
                continue
            with os.scandir(symbol.path) as timeframes:
                for timeframe in timeframes:
                    if not timeframe.is_dir(follow_symlinks=False):
                        continue
                    for name in names:
                        try:
                            mtime = os.stat(os.path.join(timeframe.path, name)).st_mtime
                        except OSError:
                            continue
                        newest = mtime if newest is None or mtime > newest else newest
                        break  # names go newest first
    return None if newest is None else max(0.0, (now - newest) / 60.0)


def collect_health(
    settings: Settings,
    sample,
    redis_client,
    engine,
    service_results,
    now: datetime | None = None,
    redis_open_error: str = "",
    database_open_error: str = "",
):
    """Score everything measured; returns (HealthReport, extra metrics for metadata).

    A store that could not even be opened (client or engine None, e.g. a malformed URL) is red
    with `*_open_error` as its reason.
    """
    now = now or datetime.now(timezone.utc)
    thresholds = settings.maintenance.alerts
    window = thresholds.sustained_minutes * 60
    extra: dict = {}

    redis_ok, redis_ms, redis_stats, redis_error = probe_redis(redis_client, redis_open_error)
    extra.update(redis_stats)
    sustained = {"cpu": False, "memory": False}
    if redis_ok:
        for metric, value, limit in (("cpu", sample.cpu_percent, thresholds.cpu), ("memory", sample.memory_percent, thresholds.memory)):
            try:
                samples = record_and_read_samples(redis_client, metric, value, now.timestamp())
                sustained[metric] = health.is_sustained(samples, limit, window, now.timestamp())
            except Exception:  # noqa: BLE001
                sustained[metric] = False

    db_ok, connect_ms, query_ms, db_error = probe_database(engine, database_open_error)
    extra.update({"database_connect_ms": round(connect_ms, 2) if connect_ms else None, "database_query_ms": round(query_ms, 2) if query_ms else None})
    try:
        market_open = is_market_open(now, settings.maintenance.scheduling.market_calendar)
    except ValueError:
        market_open = False
    age = (
        newest_market_data_age_minutes(settings.market_data_dir, now.timestamp(), tz=settings.maintenance.scheduling.timezone)
        if market_open
        else None
    )

    components = [
        health.sustained_component("cpu", sample.cpu_percent, thresholds.cpu, sustained["cpu"], thresholds.sustained_minutes),
        health.sustained_component("memory", sample.memory_percent, thresholds.memory, sustained["memory"], thresholds.sustained_minutes),
        health.utilisation_component("disk", sample.disk_percent, thresholds.disk, label=f"disk of {sample.disk_path}"),
        health.utilisation_component("swap", sample.swap_percent, thresholds.swap),
        health.load_component(sample.load_1, sample.cpu_count, thresholds.load_per_core),
        health.latency_component("redis", redis_ok, redis_ms, redis_error, warn_ms=50, red_ms=500),
        health.latency_component("database", db_ok, (connect_ms or 0) + (query_ms or 0) if db_ok else None, db_error, warn_ms=200, red_ms=2000),
        health.services_component([(s.name, s.healthy, s.detail) for s in service_results]),
        health.market_data_component(age, market_open, thresholds.market_data_stale_minutes),
    ]
    extra["market_open"] = market_open
    extra["cpu_sustained"] = sustained["cpu"]
    extra["memory_sustained"] = sustained["memory"]
    return health.combine(components), extra
