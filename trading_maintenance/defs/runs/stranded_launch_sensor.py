"""Every 30 s: a run the daemon marked STARTING and died before launching goes back to the queue.

Without this, `dagster-daemon` killed between dequeuing a run and handing it to the code server
leaves the run STARTING until run monitoring fails it ("taking longer than 180 seconds to start"):
a scheduled backup or consolidation lost to a restart. Put back in the queue, it waits for its turn
under the same limits as every other run and starts once. Only runs of Dagster's default launcher
(the systemd and Compose deployments) are judged: a Kubernetes pod may take minutes to start
without a trace in the event log, and that launcher's run monitoring watches its pods itself.
"""

from __future__ import annotations

import json
import time

import dagster as dg
from dagster._core.events import DagsterEvent
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.storage.tags import GRPC_INFO_TAG

from trading_maintenance.core.runs.stranded_launches import STRANDED_AFTER_SECONDS, StartingRun, Verdict, judge

PROCESS_STARTED_PREFIX = "Started process for run"
CODE_SERVER_TIMEOUT_SECONDS = 10
MAX_RUNS_PER_TICK = 100


def _code_server_holds(grpc_info: str, run_id: str) -> bool | None:
    # get_current_runs() waits 60 s for a hung server; a sensor tick has less.
    from dagster._grpc.__generated__ import dagster_api_pb2
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._grpc.types import GetCurrentRunsResult
    from dagster_shared.serdes import deserialize_value

    try:
        info = json.loads(grpc_info)
        client = DagsterGrpcClient(port=info.get("port"), socket=info.get("socket"), host=info.get("host"),
                                   use_ssl=bool(info.get("use_ssl", False)))
        reply = client._query("GetCurrentRuns", dagster_api_pb2.Empty, timeout=CODE_SERVER_TIMEOUT_SECONDS)  # noqa: SLF001
        result = deserialize_value(reply.serialized_current_runs, GetCurrentRunsResult)
    except Exception:  # noqa: BLE001 - a code server that does not answer is judged as gone
        return None
    return run_id in result.current_runs


def starting_run_facts(instance: dg.DagsterInstance, run: dg.DagsterRun, now: float) -> StartingRun:
    starting = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING, ascending=False, limit=1).records
    starting_since = starting[0].timestamp if starting else None
    engine = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    process_started = any((record.event_log_entry.message or "").startswith(PROCESS_STARTED_PREFIX) for record in engine)
    grpc_info = run.tags.get(GRPC_INFO_TAG)
    # the code server is asked only about a run that has waited long enough to be judged
    old_enough = starting_since is not None and now - starting_since >= STRANDED_AFTER_SECONDS
    holds = _code_server_holds(grpc_info, run.run_id) if grpc_info and old_enough and not process_started else None
    return StartingRun(
        run_id=run.run_id,
        job_name=run.job_name,
        starting_since=starting_since,
        process_started=process_started,
        handed_to_code_server=bool(grpc_info),
        code_server_holds_it=holds,
    )


def requeue(instance: dg.DagsterInstance, run: dg.DagsterRun, verdict: Verdict) -> None:
    instance.report_engine_event(
        f"Put back in the run queue: the daemon stopped while launching this run ({verdict.reason}). "
        "It starts again when the queue's limits allow.",
        run,
    )
    instance.report_dagster_event(DagsterEvent.job_enqueue(run), run_id=run.run_id)


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: a run left STARTING for over a minute with no run process, which a daemon killed "
    "mid-launch leaves behind, goes back to the run queue instead of failing after the start timeout.",
)
def stranded_launch_sensor(context: dg.SensorEvaluationContext):
    instance = context.instance
    launcher = type(instance.run_launcher)
    if not issubclass(launcher, DefaultRunLauncher):
        # A pod or container may take minutes to start without any sign of it in the event log: only
        # the default launcher's signs (its code server, its run process) are judged here; the
        # others' run monitoring checks their workers and resumes or fails a run itself.
        return dg.SkipReason(f"the run launcher is {launcher.__name__}: its own run monitoring handles runs that do not start")
    now = time.time()
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING]), limit=MAX_RUNS_PER_TICK)
    requeued, waiting = [], []
    for record in records:
        # Read again: the queue may have moved it on since the listing.
        run = instance.get_run_by_id(record.dagster_run.run_id)
        if run is None or run.status != dg.DagsterRunStatus.STARTING:
            continue
        verdict = judge(starting_run_facts(instance, run, now), now)
        if verdict.requeue:
            requeue(instance, run, verdict)
            context.log.warning(f"run {run.run_id} ({run.job_name}) put back in the queue: {verdict.reason}")
            requeued.append(run.run_id)
        else:
            waiting.append(f"{run.run_id[:8]} ({verdict.reason})")
    if requeued:
        return dg.SkipReason(f"put {len(requeued)} stranded run(s) back in the queue: {', '.join(requeued)}")
    if waiting:
        return dg.SkipReason("no stranded run; STARTING: " + "; ".join(waiting)[:900])
    return dg.SkipReason("no run is STARTING")
