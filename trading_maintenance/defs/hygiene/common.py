"""What the hygiene tasks share: the dry-run config, listing actions first, publishing and failing."""

from pathlib import Path

import dagster as dg

from trading_maintenance.core.common.masking import mask_text
from trading_maintenance.core.hygiene.failures import failure_message
from trading_maintenance.defs.common import conclude


class HygieneConfig(dg.Config):
    dry_run: bool = False


def relative_to_root(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


PASSIVE_ACTIONS = ("keep", "skip", "note", "left alone")


def actions_first(rows: list[dict], passive: tuple[str, ...] = PASSIVE_ACTIONS) -> list[dict]:
    """What was (or would be) done first, in order; then one counted row per kind of thing left
    alone, so a few deletions are never buried under hundreds of "keep" rows."""
    active = [row for row in rows if row["action"] not in passive]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["action"] in passive:
            groups.setdefault((row.get("category", ""), row["action"], row.get("reason", "")), []).append(row)
    summary = []
    for (category, action, reason), members in groups.items():
        first = members[0].get("path", "")
        path = first if len(members) == 1 else f"{len(members)} files, e.g. {first}"
        summary.append({**members[0], "category": category, "action": action, "path": path, "reason": reason, "files": len(members)})
    return [{**row, "files": 1} for row in active] + summary


def finish_task(context, redis_client, task: str, result: dict, failures: list[str]) -> dict:
    """Publish the result; fail the run (after publishing) when any part failed."""
    failures = [mask_text(f) for f in failures]
    result = {"status": "failed" if failures else "success", "run_id": context.run_id, **result}
    if failures:
        result["failures"] = failures[:200]
    result["published_to_redis"] = conclude(
        context, redis_client, task, result,
        failure=failure_message(task, failures) if failures else "",
        failure_metadata={"failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures[:50])), "failure_count": len(failures)},
    )
    return result
