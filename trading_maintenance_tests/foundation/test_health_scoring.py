"""Scoring: thresholds at, below and above each limit; worst-of status; sustained spikes."""

import pytest

from trading_maintenance.core.health import scoring as health
from trading_maintenance.core.health.scoring import GREEN, RED, SKIPPED, YELLOW


@pytest.mark.parametrize(
    "warning, value, status",
    [
        (80, 79.9, GREEN), (80, 80.0, YELLOW), (80, 80.1, YELLOW), (80, 89.9, YELLOW), (80, 90.0, RED), (80, 100, RED),
        (85, 84.99, GREEN), (85, 85.0, YELLOW), (85, 92.49, YELLOW), (85, 92.5, RED),
        (90, 89.9, GREEN), (90, 90.0, YELLOW), (90, 94.9, YELLOW), (90, 95.0, RED),
    ],
)
def test_utilisation_status_at_below_and_above_each_limit(warning, value, status):
    assert health.utilisation_status(value, warning) == status


def test_utilisation_score_is_continuous_and_falling():
    assert health.utilisation_score(10, 80) == 100
    assert health.utilisation_score(40, 80) == 100
    assert health.utilisation_score(80, 80) == pytest.approx(70)
    assert health.utilisation_score(90, 80) == pytest.approx(30)
    assert health.utilisation_score(100, 80) == pytest.approx(0)
    scores = [health.utilisation_score(v, 80) for v in range(0, 101)]
    assert all(a >= b for a, b in zip(scores, scores[1:]))


def test_one_red_component_is_never_averaged_away():
    components = [health.ComponentHealth(name, GREEN, 100.0) for name in health.WEIGHTS if name != "redis"]
    components.append(health.latency_component("redis", False, None, "ConnectionError"))
    report = health.combine(components)
    assert report.status == RED
    assert report.score <= health.RED_CAP and report.weighted_score == 85.0  # the weighted mean alone
    assert any("redis unreachable" in r for r in report.reasons)


def test_yellow_caps_and_all_green():
    green = [health.ComponentHealth(name, GREEN, 100.0) for name in health.WEIGHTS]
    assert health.combine(green).score == 100 and health.combine(green).status == GREEN
    mixed = green[:-1] + [health.ComponentHealth("market_data", YELLOW, 60.0, reason="stale")]
    report = health.combine(mixed)
    assert report.status == YELLOW and report.score <= health.YELLOW_CAP and report.reasons == ["stale"]


def test_skipped_components_do_not_count():
    components = [health.ComponentHealth("cpu", GREEN, 50.0), health.market_data_component(None, False, 15)]
    report = health.combine(components)
    assert components[1].status == SKIPPED
    assert report.score == 50.0


def test_cpu_spike_not_sustained_stays_green():
    component = health.sustained_component("cpu", 97, 80, sustained=False, minutes=5)
    assert component.status == GREEN and "not sustained" in component.reason
    sustained = health.sustained_component("cpu", 97, 80, sustained=True, minutes=5)
    assert sustained.status == RED and "sustained 5 min" in sustained.reason


def test_is_sustained_needs_the_whole_window_above():
    now = 10_000.0
    above = [(now - 300, 95), (now - 150, 91), (now, 90)]
    assert health.is_sustained(above, 80, 300, now)
    assert not health.is_sustained([(now - 200, 95), (now, 95)], 80, 300, now)  # window not covered yet
    assert not health.is_sustained([(now - 300, 95), (now - 100, 70), (now, 95)], 80, 300, now)  # dipped
    assert not health.is_sustained([(now, 99)], 80, 300, now)
    assert health.is_sustained([(now - 300, 80), (now, 80)], 80, 300, now)  # at the limit counts


@pytest.mark.parametrize("load, cores, status", [(1.9, 2, GREEN), (2.0, 2, YELLOW), (3.9, 2, YELLOW), (4.0, 2, RED)])
def test_load_per_core(load, cores, status):
    assert health.load_component(load, cores).status == status


@pytest.mark.parametrize("load, cores, status", [(5.9, 2, GREEN), (6.0, 2, YELLOW), (11.9, 2, YELLOW), (12.0, 2, RED)])
def test_load_limit_configured(load, cores, status):
    component = health.load_component(load, cores, warning_per_core=3.0)
    assert component.status == status
    assert status == GREEN or "from" in component.reason


@pytest.mark.parametrize("latency, status", [(None, RED), (10, GREEN), (49.9, GREEN), (50, YELLOW), (499, YELLOW), (500, RED)])
def test_latency_limits(latency, status):
    assert health.latency_component("redis", latency is not None, latency).status == status


def test_services_half_down_is_red():
    assert health.services_component([("a", True, "ok"), ("b", False, "HTTP 500")]).status == RED
    assert health.services_component([("a", True, "ok"), ("b", True, "ok"), ("c", False, "x")]).status == YELLOW
    assert health.services_component([]).status == SKIPPED


@pytest.mark.parametrize("age, status", [(1, GREEN), (14.9, GREEN), (15, YELLOW), (59, YELLOW), (60, RED), (None, RED)])
def test_market_data_freshness_in_market_hours(age, status):
    assert health.market_data_component(age, True, 15).status == status
