"""When the health score falls below the threshold, decide whether to launch emergency maintenance.

An incident opens at the first low score and closes at the first score back at or above the
threshold. Within an incident, maintenance is launched once, and again only after the cooldown and
on a health check newer than the last launch (never on the same stale reading).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class HealthReading:
    score: float
    timestamp: float  # unix time of the health check
    record_id: int  # the event's storage id, identifies the reading


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
                f"recovered: health score {reading.score:g} >= threshold {threshold:g}; incident {incident['id']} closed",
                {"last_record_id": reading.record_id},
            )
        return EmergencyDecision(False, f"healthy: score {reading.score:g} >= threshold {threshold:g}", {"last_record_id": reading.record_id})

    if not incident:
        incident = {"id": reading.record_id, "opened_at": reading.timestamp, "launches": 1, "last_launch_at": now, "last_launch_record_id": reading.record_id}
        return EmergencyDecision(
            True,
            f"health score {reading.score:g} < threshold {threshold:g}: incident {incident['id']} opened",
            {"incident": incident, "last_record_id": reading.record_id},
            run_key=f"emergency-{incident['id']}-1",
        )

    since = now - incident["last_launch_at"]
    if since < cooldown_seconds:
        remaining = int(cooldown_seconds - since)
        return EmergencyDecision(
            False,
            f"score {reading.score:g} still below {threshold:g}; emergency maintenance already launched for incident "
            f"{incident['id']} {int(since)} s ago, cooldown ends in {remaining} s",
            {**state, "last_record_id": reading.record_id},
        )
    if reading.record_id <= incident["last_launch_record_id"]:
        return EmergencyDecision(
            False,
            f"cooldown over for incident {incident['id']}, waiting for a health check newer than the last launch",
            {**state, "last_record_id": reading.record_id},
        )
    launches = incident["launches"] + 1
    incident = {**incident, "launches": launches, "last_launch_at": now, "last_launch_record_id": reading.record_id}
    return EmergencyDecision(
        True,
        f"score {reading.score:g} still below {threshold:g} after the cooldown: relaunch {launches} for incident {incident['id']}",
        {"incident": incident, "last_record_id": reading.record_id},
        run_key=f"emergency-{incident['id']}-{launches}",
    )
