"""Health scoring: each component gets a 0-100 score and a status; the whole gets a weighted score
and the worst status.

Score of a utilisation metric (percent used, threshold W = the configured alert level, critical
C = W + (100 - W) / 2):
    value <  W/2      -> 100
    W/2 .. W          -> 100 down to 70 (linear)
    W .. C            -> 70 down to 30
    C .. 100          -> 30 down to 0
Status: green below W, yellow from W (at the limit counts as reached) to below C, red from C.

Weights (renormalised over the components that were measured; a component that is skipped, such
as market-data freshness outside market hours, does not count):
    cpu 15, memory 15, disk 15, swap 5, load 5, redis 15, database 15, services 10, market_data 5
The overall status is the worst component status, and the score is capped so one red component is
never averaged away: any red -> at most 59, any yellow -> at most 84.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GREEN, YELLOW, RED, SKIPPED = "green", "yellow", "red", "skipped"
_RANK = {GREEN: 0, YELLOW: 1, RED: 2}

WEIGHTS: dict[str, float] = {
    "cpu": 15,
    "memory": 15,
    "disk": 15,
    "swap": 5,
    "load": 5,
    "redis": 15,
    "database": 15,
    "services": 10,
    "market_data": 5,
}
RED_CAP = 59.0
YELLOW_CAP = 84.0


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: str
    score: float
    value: float | None = None
    unit: str = ""
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HealthReport:
    score: float
    status: str
    components: list[ComponentHealth]
    reasons: list[str] = field(default_factory=list)
    weighted_score: float = 100.0  # before the worst-of cap

    def component(self, name: str) -> ComponentHealth | None:
        return next((c for c in self.components if c.name == name), None)

    def as_dict(self) -> dict:
        return {
            "score": self.score,
            "status": self.status,
            "reasons": self.reasons,
            "weighted_score": self.weighted_score,
            "components": [c.as_dict() for c in self.components],
        }


def critical_level(warning: float) -> float:
    return warning + (100.0 - warning) / 2.0


def utilisation_score(value: float, warning: float) -> float:
    critical = critical_level(warning)
    value = max(0.0, min(100.0, value))
    half = warning / 2.0
    if value < half:
        return 100.0
    if value < warning:
        return 100.0 - 30.0 * (value - half) / (warning - half)
    if value < critical:
        return 70.0 - 40.0 * (value - warning) / (critical - warning)
    if critical >= 100.0:
        return 0.0
    return max(0.0, 30.0 - 30.0 * (value - critical) / (100.0 - critical))


def utilisation_status(value: float, warning: float) -> str:
    if value >= critical_level(warning):
        return RED
    if value >= warning:
        return YELLOW
    return GREEN


def utilisation_component(name: str, value: float, warning: float, label: str | None = None) -> ComponentHealth:
    status = utilisation_status(value, warning)
    label = label or name
    reason = (
        ""
        if status == GREEN
        else f"{label} {value:.1f}% >= {'critical' if status == RED else 'warning'} {critical_level(warning) if status == RED else warning:.1f}%"
    )
    return ComponentHealth(name, status, round(utilisation_score(value, warning), 2), round(value, 2), "%", reason)


def sustained_component(
    name: str, value: float, warning: float, sustained: bool, minutes: int
) -> ComponentHealth:
    """CPU and memory spikes are normal; they only count once sustained over the window."""
    component = utilisation_component(name, value, warning)
    if component.status != GREEN and not sustained:
        return ComponentHealth(
            name, GREEN, max(component.score, 70.0), component.value, "%",
            f"{name} {value:.1f}% above {warning:.0f}% but not sustained for {minutes} min",
        )
    if component.status != GREEN:
        return ComponentHealth(
            component.name, component.status, component.score, component.value, "%",
            component.reason + f" (sustained {minutes} min)",
        )
    return component


def load_component(load_1: float, cpu_count: int, warning_per_core: float = 1.0) -> ComponentHealth:
    """Load per core: below the warning level is fine, up to twice it a warning, beyond critical."""
    per_core = load_1 / max(cpu_count, 1)
    if per_core >= 2.0 * warning_per_core:
        return ComponentHealth("load", RED, 10.0, round(per_core, 2), "per core",
                               f"load {load_1:.2f} is {per_core:.1f}x the {cpu_count} cores (critical from {2.0 * warning_per_core:g}x)")
    if per_core >= warning_per_core:
        return ComponentHealth("load", YELLOW, 60.0, round(per_core, 2), "per core",
                               f"load {load_1:.2f} is {per_core:.1f}x the {cpu_count} cores (warning from {warning_per_core:g}x)")
    return ComponentHealth("load", GREEN, 100.0 - 30.0 * per_core / warning_per_core, round(per_core, 2), "per core")


def latency_component(
    name: str, reachable: bool, latency_ms: float | None, error: str = "", warn_ms: float = 50.0, red_ms: float = 500.0
) -> ComponentHealth:
    """A store that cannot be reached is red; a slow one yellow."""
    if not reachable or latency_ms is None:
        return ComponentHealth(name, RED, 0.0, None, "ms", f"{name} unreachable: {error}" if error else f"{name} unreachable")
    if latency_ms >= red_ms:
        return ComponentHealth(name, RED, 20.0, round(latency_ms, 2), "ms", f"{name} latency {latency_ms:.0f} ms >= {red_ms:.0f} ms")
    if latency_ms >= warn_ms:
        return ComponentHealth(name, YELLOW, 65.0, round(latency_ms, 2), "ms", f"{name} latency {latency_ms:.0f} ms >= {warn_ms:.0f} ms")
    return ComponentHealth(name, GREEN, 100.0, round(latency_ms, 2), "ms")


def services_component(results: list[tuple[str, bool, str]]) -> ComponentHealth:
    """results: (service name, healthy, detail). Half or more down is red, any down is yellow."""
    if not results:
        return ComponentHealth("services", SKIPPED, 100.0, None, "", "no services configured")
    down = [(name, detail) for name, healthy, detail in results if not healthy]
    healthy_share = 100.0 * (len(results) - len(down)) / len(results)
    if not down:
        return ComponentHealth("services", GREEN, 100.0, healthy_share, "% healthy")
    names = ", ".join(f"{n} ({d})" for n, d in down)
    status = RED if len(down) * 2 >= len(results) else YELLOW
    return ComponentHealth("services", status, round(healthy_share, 2), round(healthy_share, 2), "% healthy", f"unhealthy services: {names}")


def market_data_component(age_minutes: float | None, market_open: bool, stale_minutes: int) -> ComponentHealth:
    """Fresh bars matter only while the market is open."""
    if not market_open:
        return ComponentHealth("market_data", SKIPPED, 100.0, age_minutes, "min", "market closed")
    if age_minutes is None:
        return ComponentHealth("market_data", RED, 0.0, None, "min", "no market-data file written in the last days during market hours")
    if age_minutes >= 4 * stale_minutes:
        return ComponentHealth(
            "market_data", RED, 10.0, round(age_minutes, 1), "min", f"newest market data is {age_minutes:.0f} min old (>= {4 * stale_minutes} min)"
        )
    if age_minutes >= stale_minutes:
        return ComponentHealth(
            "market_data", YELLOW, 60.0, round(age_minutes, 1), "min", f"newest market data is {age_minutes:.0f} min old (>= {stale_minutes} min)"
        )
    return ComponentHealth("market_data", GREEN, 100.0, round(age_minutes, 1), "min")


def combine(components: list[ComponentHealth], weights: dict[str, float] = WEIGHTS) -> HealthReport:
    measured = [c for c in components if c.status != SKIPPED]
    total_weight = sum(weights.get(c.name, 0.0) for c in measured)
    if total_weight <= 0:
        return HealthReport(100.0, GREEN, components, [])
    score = sum(weights.get(c.name, 0.0) * c.score for c in measured) / total_weight
    weighted = round(score, 1)
    status = max((c.status for c in measured), key=lambda s: _RANK[s], default=GREEN)
    if status == RED:
        score = min(score, RED_CAP)
    elif status == YELLOW:
        score = min(score, YELLOW_CAP)
    reasons = [c.reason for c in sorted(measured, key=lambda c: -_RANK[c.status]) if c.status != GREEN and c.reason]
    return HealthReport(round(score, 1), status, components, reasons, weighted)


def is_sustained(samples: list[tuple[float, float]], threshold: float, window_seconds: float, now: float, grace_seconds: float = 90.0) -> bool:
    """True when every sample in the window is at or above threshold and the samples span the window.

    samples: (unix time, value). The window is covered when some sample is at least
    `window_seconds` old (within `grace_seconds` more, so a check every 5 minutes can see a
    5-minute window) and nothing in between dipped below the threshold.
    """
    start = now - window_seconds - grace_seconds
    recent = sorted((t, v) for t, v in samples if start <= t <= now)
    if len(recent) < 2 or recent[0][0] > now - window_seconds:
        return False
    return all(v >= threshold for _, v in recent)
