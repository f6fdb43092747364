"""How a hygiene task that partly failed says why: each part's cause, masked and bounded, in the
failure message itself (the message is what the CLI, the UI's run list and alerts show first)."""

from __future__ import annotations

from trading_maintenance.core.common.masking import mask_text

CAUSE_MAX_CHARS = 300
CAUSES_IN_MESSAGE = 5
MESSAGE_MAX_CHARS = 2000


def cause_of(exc: BaseException) -> str:
    """`Type: first line of the message`, secrets masked, at most CAUSE_MAX_CHARS."""
    lines = str(exc).strip().splitlines()
    detail = mask_text(lines[0].strip()) if lines else ""
    cause = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return cause if len(cause) <= CAUSE_MAX_CHARS else cause[: CAUSE_MAX_CHARS - 3] + "..."


def part_failed(part: str, exc: BaseException) -> str:
    return f"{part} failed: {cause_of(exc)}"


def failure_message(task: str, failures: list[str]) -> str:
    """`task: N part(s) failed: cause; cause; ... (and K more)`, masked, at most MESSAGE_MAX_CHARS."""
    causes = [mask_text(f) for f in failures[:CAUSES_IN_MESSAGE]]
    message = f"{task}: {len(failures)} part(s) failed: " + "; ".join(causes)
    if len(failures) > CAUSES_IN_MESSAGE:
        message += f" (and {len(failures) - CAUSES_IN_MESSAGE} more in the run's metadata)"
    return message if len(message) <= MESSAGE_MAX_CHARS else message[: MESSAGE_MAX_CHARS - 3] + "..."
