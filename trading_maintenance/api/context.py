"""What every route shares: the Dagster instance, settings, the project's definitions, and one kept-open
workspace through which runs are submitted to the instance's run queue, exactly as a schedule's are."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from trading_maintenance import run_launch
from trading_maintenance.tasks import Task

API_TRIGGER = "api"
EMERGENCY_TRIGGER = "api-emergency"
# The queue starts higher-priority runs first; an emergency run should not wait behind routine ones.
EMERGENCY_PRIORITY = "10"
ANSWER_TTL_SECONDS = 1.0  # an answer older than this is refreshed in the background
ANSWER_MAX_STALE_SECONDS = 10.0  # ... and one older than this is never served: the request waits for a fresh one
log = logging.getLogger("trading_maintenance.api")


class ApiProblem(Exception):
    """A request that cannot be served; becomes a JSON error with this status and message."""

    def __init__(self, status_code: int, message: str, valid: list[str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.valid = valid


@functools.lru_cache(maxsize=32)
def _adapter(answer_type):
    from pydantic import TypeAdapter

    return TypeAdapter(answer_type)


@dataclass
class ApiContext:
    instance: object
    settings: object
    token: str | None
    _exit_stack: ExitStack = field(default_factory=ExitStack)
    _workspaces: dict = field(default_factory=dict)
    _submit_lock: threading.Lock = field(default_factory=threading.Lock)
    _defs: object = None
    work_done_cache: dict = field(default_factory=dict)  # finished run id -> (bytes freed, files processed)
    _answers: dict = field(default_factory=dict)  # key -> (computed at, answer)
    _answer_lock: threading.Lock = field(default_factory=threading.Lock)  # guards _answers and _refreshing, held briefly
    _compute_lock: threading.Lock = field(default_factory=threading.Lock)  # one answer computed at a time
    _answers_generation: int = 0  # forget_answers counts up: a refresh begun before it is not kept
    _refreshing: set = field(default_factory=set)  # keys whose background refresh is under way
    _redis_client: object = None
    _reader: object = None

    @property
    def defs(self):
        if self._defs is None:
            from trading_maintenance.definitions import defs

            self._defs = defs
        return self._defs

    def instigator_names(self) -> set[str]:
        repo = self.defs.get_repository_def()
        return {s.name for s in repo.schedule_defs} | {s.name for s in repo.sensor_defs}

    def workspace(self):
        """(location name, process context) of the project's definitions, as the daemon names them."""
        location = run_launch.daemon_location_name(self.instance, self.instigator_names())
        if location not in self._workspaces:
            self._workspaces[location] = self._exit_stack.enter_context(run_launch.project_workspace(self.instance, location))
        return location, self._workspaces[location]

    def close(self) -> None:
        self._exit_stack.close()

    def storage_reader(self):
        """The instance's storage through the cheap read path of instance_read: Dagster's default local
        SQLite files read directly (no SQLAlchemy), any other storage through Dagster's storage classes."""
        if self._reader is None:
            from pathlib import Path

            from dagster._core.storage.event_log import SqliteEventLogStorage
            from dagster._core.storage.runs import SqliteRunStorage

            from trading_maintenance.instance_read import DagsterStorageReader, SqliteFilesReader

            home = Path(self.instance.root_directory)
            local_files = (type(self.instance.run_storage) is SqliteRunStorage
                           and type(self.instance.event_log_storage) is SqliteEventLogStorage
                           and Path(self.instance.event_log_storage._base_dir) == home / "history" / "runs"
                           and self.instance.run_storage._conn_string.endswith(str(home / "history" / "runs.db")))
            self._reader = SqliteFilesReader(home) if local_files else DagsterStorageReader(self.instance)
        return self._reader

    def redis(self):
        if self._redis_client is None:
            from trading_maintenance.resources.redis import redis_client

            self._redis_client = redis_client(self.settings.redis_url(), self.settings.data_dir)
        return self._redis_client

    async def recent_json(self, key, compute, answer_type):
        """The JSON bytes of `compute()` validated as `answer_type`, shared by the requests of the same second.

        A fresh answer is served without a thread hop, validation or serialisation, so fifty pollers cost
        one storage read and one serialisation a second. Once an answer is ANSWER_TTL_SECONDS old, one
        background thread recomputes it while requests go on getting the last one (they never queue
        behind a refresh); only with no answer, one forgotten after a change made through the API, or
        one older than ANSWER_MAX_STALE_SECONDS (refreshes failing) does a request wait for a fresh one,
        and then a failure reaches it as a JSON error."""
        from fastapi.responses import Response

        cached = self._answers.get(("json", key))
        age = time.monotonic() - cached[0] if cached is not None else None
        if age is None or age >= ANSWER_MAX_STALE_SECONDS:
            from starlette.concurrency import run_in_threadpool

            cached = await run_in_threadpool(self.refresh_json, key, compute, answer_type)
        elif age >= ANSWER_TTL_SECONDS:
            self._refresh_in_background(key, compute, answer_type)
        return Response(content=cached[1], media_type="application/json")

    def _refresh_in_background(self, key, compute, answer_type) -> None:
        with self._answer_lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        try:
            threading.Thread(target=self._background_refresh, args=(key, compute, answer_type),
                             name="api-answer-refresh", daemon=True).start()
        except RuntimeError:  # no thread to be had: a later request tries again
            with self._answer_lock:
                self._refreshing.discard(key)

    def _background_refresh(self, key, compute, answer_type) -> None:
        try:
            self.refresh_json(key, compute, answer_type)
        except Exception as exc:  # noqa: BLE001 - requests keep the last answer; past its bound one waits and sees the error
            log.warning("refreshing the cached answer %r failed: %s", key, type(exc).__name__)
        finally:
            with self._answer_lock:
                self._refreshing.discard(key)

    def refresh_json(self, key, compute, answer_type) -> tuple[float, bytes]:
        """Compute, validate and serialise one answer and keep it, unless forget_answers ran meanwhile
        (what was read before a change made through the API is not kept after it)."""
        with self._compute_lock:  # requests waiting together share one computation
            cached = self._answers.get(("json", key))
            if cached is not None and time.monotonic() - cached[0] < ANSWER_TTL_SECONDS:
                return cached
            generation = self._answers_generation
            started = time.monotonic()
            adapter = _adapter(answer_type)
            body = adapter.dump_json(adapter.validate_python(compute()))
            answer = (started, body)
            with self._answer_lock:
                if generation == self._answers_generation:
                    self._answers[("json", key)] = answer
            return answer

    def forget_answers(self) -> None:
        with self._answer_lock:
            self._answers_generation += 1
            self._answers.clear()

    # ---- submitting runs ------------------------------------------------------------------------

    def submit(self, task: Task, dry_run: bool, partition: str | None, trigger: str, extra_tags: Mapping[str, str] = ()) -> dict:
        """Submit one task's job to the run queue with the job's tags; never executes it here."""
        from dagster._core.run_coordinator import QueuedRunCoordinator

        if not isinstance(self.instance.run_coordinator, QueuedRunCoordinator):
            raise ApiProblem(503, "this Dagster instance does not queue runs (its run_coordinator is not the queued one); "
                                  "render its dagster.yaml with `trading-maintenance init` so runs obey the run limits")
        job = self.defs.resolve_job_def(task.job_name)
        run_config = run_launch.dry_run_config(job) if dry_run else {}
        if dry_run and not run_config:
            raise ApiProblem(422, f"dry_run: task {task.name!r} has no dry run (none of its steps changes anything it could plan)")
        tags = {**job.run_tags, run_launch.TASK_TAG: job.run_tags.get(run_launch.TASK_TAG, task.name),
                run_launch.TRIGGER_TAG: trigger, **dict(extra_tags)}
        if task.partitioned:
            key = partition or run_launch.default_partition(task.partitioned, self.settings, job.partitions_def)
            if job.partitions_def is not None and not job.partitions_def.has_partition_key(key):
                raise ApiProblem(422, f"partition: {key!r} is not a partition of task {task.name!r} ({task.partitioned})")
            tags["dagster/partition"] = key
        elif partition is not None:
            raise ApiProblem(422, f"partition: task {task.name!r} is not partitioned")
        try:
            run_launch.validate_run_config(job, run_config)
        except run_launch.OpConfigError as exc:
            raise ApiProblem(422, str(exc)) from None
        with self._submit_lock:
            location, process_context = self.workspace()
            run_id = run_launch.submit_in_workspace(self.instance, process_context, location, job.name, run_config, tags)
        self.forget_answers()
        run = self.instance.get_run_by_id(run_id)
        return {"task": task.name, "job": job.name, "run_id": run_id, "status": run.status.value,
                "partition": tags.get("dagster/partition"), "dry_run": dry_run}

    def remote_repository(self):
        with self._submit_lock:
            location, process_context = self.workspace()
            request = process_context.create_request_context()
            return next(iter(request.get_code_location(location).get_repositories().values()))
