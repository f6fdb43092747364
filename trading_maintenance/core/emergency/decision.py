"""When the health score falls below the threshold, decide whether to launch emergency maintenance.

An incident opens at the first low score and closes at the first score back at or above the
threshold. Within an incident, maintenance is launched once, and again only after the cooldown and
on a health check newer than the last launch (never on the same stale reading).

Two kinds of reading feed the decision: the full health check and the cheap probe that runs every
minute at any hour (`core.health.probe`). The probe measures only some components, so a probe newer
than the full check can lower the score the full check found but never raise it: the full check's
other components (CPU, services, market data) are still what it last measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

FULL_CHECK, PROBE = "health check", "probe"


@dataclass(frozen=True)
class HealthReading:
    score: float
    timestamp: float  # unix time of the health check
    record_id: int  # the event's storage id, identifies the reading
    status: str = ""  # green, yellow or red; empty when the reading did not record it
    reasons: tuple[str, ...] = ()
    source: str = FULL_CHECK

    def describe(self, threshold: float) -> str:
        """`score 59 (red) is above the emergency threshold 30: reasons`, for every message a person reads."""
        relation = "above" if self.score > threshold else "at" if self.score == threshold else "below"
        status = f" ({self.status})" if self.status else ""
        source = " in the probe" if self.source == PROBE else ""
        reasons = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"score {self.score:g}{status}{source} is {relation} the emergency threshold {threshold:g}{reasons}"


def effective_reading(full_check: HealthReading | None, probe: HealthReading | None) -> HealthReading | None:
    """The reading to decide on: the full check, lowered by a newer probe that found worse."""
    if probe is None or (full_check is not None and probe.record_id < full_check.record_id):
        return full_check
    if full_check is None or probe.score < full_check.score:
        return probe
    return HealthReading(
        full_check.score, probe.timestamp, probe.record_id, full_check.status, full_check.reasons, full_check.source
    )


@dataclass(frozen=True)
class EmergencyDecision:
    launch: bool
    reason: str
    state: dict
    run_key: str | None = None


def parse_state(cursor: str | None) -> dict:
    try:
        state = json.loads(cursor) if cursor else {}
        return state if isinstance(state, dict) else {}
    except ValueError:
        return {}


def decide(reading: HealthReading | None, threshold: float, cooldown_seconds: float, state: dict, now: float) -> EmergencyDecision:
    state = dict(state)
    if reading is None:
        return EmergencyDecision(False, "no health check has been recorded yet", state)
    incident = state.get("incident")
    if reading.score >= threshold:
        if incident:
            return EmergencyDecision(
                False,
                f"recovered: {reading.describe(threshold)}; incident {incident['id']} closed",
                {"last_record_id": reading.record_id},
            )
        return EmergencyDecision(False, f"no emergency: {reading.describe(threshold)}", {"last_record_id": reading.record_id})

    if not incident:
        incident = {"id": reading.record_id, "opened_at": reading.timestamp, "launches": 1, "last_launch_at": now, "last_launch_record_id": reading.record_id}
        return EmergencyDecision(
            True,
            f"incident {incident['id']} opened: {reading.describe(threshold)}",
            {"incident": incident, "last_record_id": reading.record_id},
            run_key=f"emergency-{incident['id']}-1",
        )

    since = now - incident["last_launch_at"]
    if since < cooldown_seconds:
        remaining = int(cooldown_seconds - since)
        return EmergencyDecision(
            False,
            f"emergency maintenance already launched for incident {incident['id']} {int(since)} s ago, cooldown ends "
            f"in {remaining} s; {reading.describe(threshold)}",
            {**state, "last_record_id": reading.record_id},
        )
    if reading.record_id <= incident["last_launch_record_id"]:
        return EmergencyDecision(
            False,
            f"cooldown over for incident {incident['id']}, waiting for a health check newer than the last launch; "
            f"{reading.describe(threshold)}",
            {**state, "last_record_id": reading.record_id},
        )
    launches = incident["launches"] + 1
    incident = {**incident, "launches": launches, "last_launch_at": now, "last_launch_record_id": reading.record_id}
    return EmergencyDecision(
        True,
        f"relaunch {launches} for incident {incident['id']} after the cooldown: {reading.describe(threshold)}",
        {"incident": incident, "last_record_id": reading.record_id},
        run_key=f"emergency-{incident['id']}-{launches}",
    )
