"""Which STARTING runs did a dying daemon leave behind, and may they go back to the queue?

The daemon's queue marks a run STARTING, then asks the code server to start its process. A daemon
killed between the two (an OOM kill, a node drained, `kill -9`) leaves a run that nothing will ever
start: Dagster's run monitoring fails it after `start_timeout_seconds` ("Run timed out due to taking
longer than 180 seconds to start"), so a queued maintenance run is lost to a restart. A run is put
back in the queue only when every sign says no process took it: it has been STARTING longer than
the grace period, no run process logged its start, and the code server it was handed to (if it got
that far) does not hold it. A run its code server holds is left to run monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longer than any launch takes (a code server's start_run answers in well under a second; a run
# process logs its pid within seconds), shorter than run monitoring's 180 s start timeout, less one
# sensor interval.
STRANDED_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class StartingRun:
    run_id: str
    job_name: str
    starting_since: float | None  # when the queue marked it STARTING
    process_started: bool  # a run process logged "Started process for run"
    handed_to_code_server: bool  # the launcher recorded the code server it called
    code_server_holds_it: bool | None  # None: the code server did not answer


@dataclass(frozen=True)
class Verdict:
    requeue: bool
    reason: str


def judge(run: StartingRun, now: float, stranded_after: float = STRANDED_AFTER_SECONDS) -> Verdict:
    if run.starting_since is None:
        return Verdict(False, "no STARTING event recorded")
    waited = now - run.starting_since
    if waited < stranded_after:
        return Verdict(False, f"STARTING for {waited:.0f} s, under {stranded_after:.0f} s")
    if run.process_started:
        return Verdict(False, "its run process has started")
    if not run.handed_to_code_server:
        return Verdict(True, f"STARTING for {waited:.0f} s; it was never handed to a code server")
    if run.code_server_holds_it:
        return Verdict(False, "its code server holds the run")
    # A code server that is gone took its unstarted runs with it: a run process it had spawned would
    # have logged its start long before the grace period ended.
    where = "its code server does not hold it" if run.code_server_holds_it is False else "its code server is gone"
    return Verdict(True, f"STARTING for {waited:.0f} s; {where} and no run process started")
