"""Starting a maintenance run from the CLI behind the same limits as every other way in.

When a daemon serves the instance, the run goes to Dagster's run queue (the daemon applies
`max_concurrent_runs` and the one-run-per-task tag limit) and the CLI follows it to the end.
Otherwise it runs in this process, after `core.run_limits.may_start` allowed it against the same
limits read from the instance's configuration; the check and the creation of the run happen under
one lock in DAGSTER_HOME, so two commands racing cannot both start the same task.

A run started in process records its process (pid, start time, host) as tags: when that process
dies without ending the run, the next command marks the run failed instead of letting it block
its task forever (the daemon's run monitoring does the same for the runs it launched).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import yaml

from trading_maintenance.core.runs.limits import RunInProgress, StartDecision, TagLimit, may_start
from trading_maintenance.instance import dagster_home, home_lock
from trading_maintenance.settings import PROJECT_ROOT

TASK_TAG = "maintenance/task"
TRIGGER_TAG = "maintenance/trigger"
PID_TAG = "maintenance/pid"
PROCESS_STARTED_TAG = "maintenance/process_started"
HOST_TAG = "maintenance/host"
DEFINITIONS_MODULE = "trading_maintenance.definitions"
DEFAULT_LOCATION_NAME = "trading_maintenance"  # workspace.yaml and pyproject's code_location_name
RUN_SLOTS_LOCK_NAME = ".trading-maintenance-run-slots.lock"
# The daemon writes a heartbeat every 30 s; three missed ones mean nobody dequeues.
DAEMON_HEARTBEAT_MAX_AGE_SECONDS = 90
POLL_SECONDS = 0.5


class RunRefused(Exception):
    """The run may not start now: another run of the task (or the overall limit) is in the way."""

    def __init__(self, decision: StartDecision):
        super().__init__(decision.reason)
        self.decision = decision


class OpConfigError(ValueError):
    """A `--config KEY=VALUE` the job's ops do not accept; the message names the key and the valid ones."""


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str  # Dagster's run status at the end (SUCCESS, FAILURE, CANCELED) or QUEUED when not followed
    failures: tuple[str, ...] = ()
    dry_run_plans: tuple[str, ...] = ()  # what a dry run would have done, one text per asset

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


# ---- the instance's state -------------------------------------------------------------------


def daemon_serves_queue(instance, now: float | None = None) -> bool:
    """True when the instance queues runs and a daemon dequeuing them has sent a heartbeat lately."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    heartbeat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    now = time.time() if now is None else now
    return heartbeat is not None and now - heartbeat.timestamp <= DAEMON_HEARTBEAT_MAX_AGE_SECONDS


def _active_statuses(include_queued: bool):
    from dagster import DagsterRunStatus

    statuses = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    return statuses + [DagsterRunStatus.QUEUED] if include_queued else statuses


def runs_in_progress(instance, include_queued: bool) -> list[RunInProgress]:
    from dagster import RunsFilter

    records = instance.get_run_records(RunsFilter(statuses=_active_statuses(include_queued)))
    return [
        RunInProgress(r.dagster_run.run_id, r.dagster_run.job_name, r.dagster_run.status.value, dict(r.dagster_run.tags),
                      frozenset((r.dagster_run.run_op_concurrency.all_pools or ()) if r.dagster_run.run_op_concurrency else ()))
        for r in records
    ]


def job_pools(job) -> frozenset[str]:
    """The pools of the job's ops and assets."""
    return frozenset(op.pool for op in job.graph.iterate_op_defs() if op.pool)


def run_pool_limit(concurrency_config) -> int | None:
    """The pool limit counted in runs (`pools: granularity: run`); None when pools count steps,
    which Dagster then enforces itself as each step starts."""
    from dagster._core.instance.config import PoolGranularity

    pools = concurrency_config.pool_config
    return pools.default_pool_limit if pools.pool_granularity == PoolGranularity.RUN else None


def start_decision(instance, candidate_tags: Mapping[str, str], include_queued: bool,
                   candidate_pools: frozenset[str] = frozenset()) -> StartDecision:
    """`may_start` with the limits of the instance's own configuration and its runs in progress."""
    concurrency = instance.get_concurrency_config()
    queue = concurrency.run_queue_config
    max_runs = queue.max_concurrent_runs if queue is not None else None
    tag_limits = [TagLimit.from_instance_config(entry) for entry in (queue.tag_concurrency_limits if queue else [])]
    return may_start(candidate_tags, runs_in_progress(instance, include_queued), max_runs, tag_limits,
                     candidate_pools=candidate_pools, run_pool_limit=run_pool_limit(concurrency))


def process_tags() -> dict[str, str]:
    me = psutil.Process()
    return {PID_TAG: str(me.pid), PROCESS_STARTED_TAG: f"{me.create_time():.2f}", HOST_TAG: socket.gethostname()}


def _process_gone(tags: Mapping[str, str]) -> bool:
    try:
        pid = int(tags[PID_TAG])
        started = float(tags[PROCESS_STARTED_TAG])
    except (KeyError, ValueError):
        return False  # not started by this CLI: run monitoring's business
    try:
        return abs(psutil.Process(pid).create_time() - started) > 1.0  # same pid, another process
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def fail_runs_of_dead_processes(instance) -> list[str]:
    """Mark failed the in-process runs on this host whose process is gone; their ids."""
    host = socket.gethostname()
    failed = []
    for run in runs_in_progress(instance, include_queued=False):
        if run.tags.get(HOST_TAG) == host and _process_gone(run.tags):
            dagster_run = instance.get_run_by_id(run.run_id)
            instance.report_run_failed(
                dagster_run,
                message=(
                    f"The process that ran this run (pid {run.tags[PID_TAG]} on {host}) ended without finishing it; "
                    "marked failed by trading-maintenance so it no longer holds its task's slot."
                ),
            )
            failed.append(run.run_id)
    return failed


def default_partition(kind: str, settings, partitions_def=None) -> str:
    """The partition a partitioned task runs when none is named: the latest complete month, the
    latest trading day, or else (another cadence, or a day not yet a partition) the job's own last
    partition."""
    key = _usual_partition(kind, settings)
    if partitions_def is not None and not partitions_def.has_partition_key(key):
        return partitions_def.get_last_partition_key()
    return key


def _usual_partition(kind: str, settings) -> str:
    from datetime import datetime, timedelta, timezone

    from trading_maintenance.core.common.market_hours import trading_days

    today = datetime.now(timezone.utc).date()
    if kind == "monthly":
        previous_month_end = today.replace(day=1) - timedelta(days=1)
        return previous_month_end.replace(day=1).isoformat()
    days = trading_days(today - timedelta(days=10), today, settings.maintenance.scheduling.market_calendar)
    return days[-1].isoformat()


# ---- op config from the command line -----------------------------------------------------------


def _op_config_fields(job) -> dict[str, dict]:
    """{op name: {config key: config field}} for every op of the job that takes config."""
    fields = {}
    for node in job.graph.node_dict.values():
        config_field = getattr(node.definition, "config_field", None)
        op_fields = getattr(config_field.config_type, "fields", None) if config_field is not None else None
        if op_fields:
            fields[node.name] = dict(op_fields)
    return fields


def op_config_from_pairs(job, pairs: Sequence[str]) -> dict:
    """`KEY=VALUE` (or `OP.KEY=VALUE`) as run config for every op of the job whose config has KEY.

    VALUE is read as a YAML scalar (true, 3, 2.5, text); Dagster's config validation then checks
    its type when the run config is validated.
    """
    fields = _op_config_fields(job)
    valid = sorted({key for op_fields in fields.values() for key in op_fields})
    ops: dict[str, dict] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OpConfigError(f"--config {pair!r}: expected KEY=VALUE; valid keys for {job.name}: {', '.join(valid) or 'none'}")
        op_name, _, field_name = key.rpartition(".")
        targets = [op for op, op_fields in fields.items() if field_name in op_fields and op_name in ("", op)]
        if not targets:
            raise OpConfigError(f"--config: unknown key {key!r} for {job.name}; valid keys: {', '.join(valid) or 'none (its ops take no config)'}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            raise OpConfigError(f"--config {key}: expected a single value, got {raw!r}")
        for op in targets:
            ops.setdefault(op, {"config": {}})["config"][field_name] = value
    return {"ops": ops} if ops else {}


def dry_run_config(job) -> dict:
    """dry_run on every op of the job whose config has it."""
    ops = {op: {"config": {"dry_run": True}} for op, op_fields in _op_config_fields(job).items() if "dry_run" in op_fields}
    return {"ops": ops} if ops else {}


def merge_run_config(*configs: Mapping) -> dict:
    merged: dict = {}
    for config in configs:
        for key, value in config.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = merge_run_config(merged[key], value)
            else:
                merged[key] = value
    return merged


def validate_run_config(job, run_config: Mapping) -> None:
    """OpConfigError listing Dagster's own messages when the run config does not fit the job."""
    import dagster as dg

    try:
        dg.validate_run_config(job, run_config)
    except dg.DagsterInvalidConfigError as exc:
        details = "; ".join(error.message for error in exc.errors) or str(exc)
        raise OpConfigError(f"invalid --config for {job.name}: {details}") from None


# ---- in process -------------------------------------------------------------------------------


def claim_in_process_run(instance, job, run_config: Mapping, tags: Mapping[str, str], wait: bool,
                         on_wait: Callable[[StartDecision], None] = lambda decision: None):
    """Create the run as STARTING once the limits allow it; RunRefused without `wait`.

    Runs still QUEUED count as in progress: with no daemon they start the moment one appears.
    """
    from dagster import DagsterRunStatus

    home = dagster_home()
    recon_job = reconstructable_job(job.name)
    announced = False
    while True:
        with home_lock(home, RUN_SLOTS_LOCK_NAME):
            fail_runs_of_dead_processes(instance)
            decision = start_decision(instance, tags, include_queued=True, candidate_pools=job_pools(job))
            if decision.allowed:
                return recon_job, instance.create_run_for_job(
                    job_def=job,
                    run_config=run_config,
                    status=DagsterRunStatus.STARTING,
                    tags={**tags, **process_tags()},
                    job_code_origin=recon_job.get_python_origin(),
                )
        if not wait:
            raise RunRefused(decision)
        if not announced:
            on_wait(decision)
            announced = True
        time.sleep(POLL_SECONDS * 4)


def in_process_executor_config(job) -> dict:
    """Steps in this process, as `execute_in_process` runs them, when the job keeps Dagster's
    default executor (which would otherwise start a process per step)."""
    if job.executor_def.name == "multi_or_in_process_executor":
        return {"execution": {"config": {"in_process": {}}}}
    return {}


def reconstructable_job(job_name: str):
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", str(PROJECT_ROOT))
    return repository.get_reconstructable_job(job_name)


def execute_claimed_run(instance, recon_job, run) -> RunOutcome:
    """Execute a claimed run here; Ctrl-C (or any error) never leaves it looking in progress."""
    from dagster._core.execution.api import execute_run

    try:
        execute_run(recon_job, run, instance)
    finally:
        current = instance.get_run_by_id(run.run_id)
        if current is not None and not current.is_finished:
            instance.report_run_canceled(current, message="Interrupted in the trading-maintenance CLI before it finished.")
    return outcome_of(instance, run.run_id)


# ---- through the queue -------------------------------------------------------------------------


def daemon_location_name(instance, instigator_names: set[str]) -> str:
    """The code location name under which the daemon knows this project's definitions.

    `dagster dev -m trading_maintenance.definitions` and workspace.yaml name it differently; the
    daemon can launch a queued run only under the name it loaded, which its schedules record.
    """
    for state in instance.all_instigator_state():
        if state.name in instigator_names:
            return state.origin.repository_origin.code_location_origin.location_name
    return DEFAULT_LOCATION_NAME


def submit_to_queue(instance, job_name: str, run_config: Mapping, tags: Mapping[str, str], location_name: str) -> str:
    """Create the run from this project's code location and hand it to the run queue; its id."""
    with project_workspace(instance, location_name) as process_context:
        return submit_in_workspace(instance, process_context, location_name, job_name, run_config, tags)


@contextmanager
def project_workspace(instance, location_name: str):
    """This project's definitions loaded as the code location `location_name` (kept open by a
    long-lived process such as the API, so each submission does not load them again)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=DEFINITIONS_MODULE, attribute="defs", working_directory=str(PROJECT_ROOT)),
        location_name=location_name,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin]), read_only=False) as process_context:
        yield process_context


def submit_in_workspace(instance, process_context, location_name: str, job_name: str, run_config: Mapping,
                        tags: Mapping[str, str]) -> str:
    """Create the run with the job's own tags plus `tags` and submit it to the instance's run queue."""
    from dagster._core.definitions.selector import JobSubsetSelector

    workspace = process_context.create_request_context()
    location = workspace.get_code_location(location_name)
    repository = next(iter(location.get_repositories().values()))
    remote_job = location.get_job(
        JobSubsetSelector(location_name=location_name, repository_name=repository.name, job_name=job_name, op_selection=None)
    )
    plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance)
    run = instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    instance.submit_run(run.run_id, workspace)
    return run.run_id


def follow_run(instance, run_id: str, on_status: Callable[[str], None] = lambda status: None) -> RunOutcome:
    """Wait for a queued or launched run to finish; Ctrl-C cancels it (from the queue or running)."""
    last = None
    try:
        while True:
            run = instance.get_run_by_id(run_id)
            if run.status.value != last:
                last = run.status.value
                on_status(last)
            if run.is_finished:
                return outcome_of(instance, run_id)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        instance.run_coordinator.cancel_run(run_id)
        raise


def outcome_of(instance, run_id: str) -> RunOutcome:
    from dagster import DagsterEventType

    run = instance.get_run_by_id(run_id)
    failures = []
    if not run.is_success:
        for entry in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}):
            event = entry.dagster_event
            error = getattr(event.event_specific_data, "error", None) if event else None
            text = error.message if error is not None else (entry.user_message or "")
            if text.strip():
                failures.append(f"{event.step_key or 'run'}: {text.strip().splitlines()[0]}")
    return RunOutcome(run_id, run.status.value, tuple(failures), dry_run_plans(instance, run_id))


def dry_run_plans(instance, run_id: str) -> tuple[str, ...]:
    """The plans a dry run recorded as observations (counts per action, first items, where the rest is)."""
    from dagster import DagsterEventType

    plans = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION):
        observation = entry.dagster_event.event_specific_data.asset_observation
        metadata = observation.metadata
        if "dry_run" not in metadata:
            continue
        where = observation.asset_key.to_user_string() + (f" [{observation.partition}]" if observation.partition else "")
        counts = ", ".join(f"{name[len('would_'):].replace('_', ' ')}: {value.value}"
                           for name, value in metadata.items() if name.startswith("would_"))
        lines = [f"{where}: would {counts or 'do nothing'}"]
        lines += [f"  {line}" for line in str(metadata["first_items"].value).splitlines() if line.strip()] if "first_items" in metadata else []
        if "plan" in metadata:
            lines.append(f"  whole plan: {metadata['plan'].value}")
        plans.append("\n".join(lines))
    return tuple(plans)
