"""Intelligent maintenance (trends, anomalies, failing tasks) and the daily maintenance report."""

import json
import logging
import time

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry

from trading_maintenance.core.intelligence import trends
from trading_maintenance.defs.intelligence.ops import intelligent_maintenance_job


def test_robust_anomalies_find_the_planted_outlier_only():
    series = [(i * 300.0, 92.0 + (i % 3)) for i in range(40)]
    series[17] = (17 * 300.0, 21.0)
    found = trends.robust_anomalies("health_score", series)
    assert [(a.timestamp, a.direction) for a in found] == [(17 * 300.0, "low")]
    assert trends.robust_anomalies("health_score", series[:5]) == []  # too few points to judge


def test_linear_trend_forecasts_days_until_limit():
    series = [(day * 86400.0, 60.0 + 2.0 * day) for day in range(10)]  # +2 points a day, now at 78
    trend = trends.linear_trend("disk_percent", series, limit=90)
    assert trend.slope_per_day == pytest.approx(2.0) and trend.days_until_limit == pytest.approx(6.0)
    falling = trends.linear_trend("disk_percent", [(d * 86400.0, 80.0 - d) for d in range(10)], limit=90)
    assert falling.days_until_limit is None


def test_recommendations_order_and_failure_rates():
    rates = trends.failure_rates([("backup", False), ("backup", False), ("backup", True), ("log_rotation", True)])
    assert rates["backup"] == {"runs": 3, "failures": 2, "failure_rate": 0.667}
    soon = trends.Trend("disk_percent", 5.0, 85.0, 10, 1.0, 90.0)
    later = trends.Trend("memory_percent", 1.0, 70.0, 10, 30.0, 85.0)
    advice = trends.recommendations([later, soon], [], rates)
    assert [a["topic"] for a in advice] == ["disk_percent", "backup"] and advice[0]["severity"] == "critical"


def _store_health(instance, timestamp: float, score: float, disk: float) -> None:
    materialization = dg.AssetMaterialization(
        asset_key="system_health", metadata={"health_score": score, "disk_percent": disk, "cpu_percent": 10.0, "memory_percent": 40.0}
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="system_health_check_job",
        event_specific_data=StepMaterializationData(materialization),
    )
    instance.store_event(EventLogEntry(error_info=None, level=logging.INFO, user_message="", run_id="", timestamp=timestamp, dagster_event=event))


def test_intelligent_maintenance_job_forecasts_disk_and_flags_low_score(make_resources, redis_client):
    now = time.time()
    with dg.instance_for_test() as instance:
        for i in range(13 * 4):  # every 6 hours for 13 days; disk +1 point a day from 70
            t = now - (13 * 86400) + i * 6 * 3600
            score = 15.0 if i == 30 else 90.0 + (i % 4)
            _store_health(instance, t, score, 70.0 + (t - (now - 13 * 86400)) / 86400)
        result = intelligent_maintenance_job.execute_in_process(resources=make_resources(), instance=instance)
    assert result.success
    output = result.output_for_node("analyse_maintenance_history")
    disk = next(t for t in output["trends"] if t["metric"] == "disk_percent")
    assert disk["slope_per_day"] == pytest.approx(1.0, abs=0.01)
    assert disk["days_until_limit"] == pytest.approx(7.0, abs=0.5)  # 83 now, limit 90
    assert [a["value"] for a in output["anomalies"] if a["metric"] == "health_score"] == [15.0]
    topics = [r["topic"] for r in output["recommendations"]]
    assert "disk_percent" in topics and "health_score" in topics
    assert json.loads(redis_client.get("maintenance:result:intelligent_maintenance"))["health_checks_analysed"] == 52
