"""May a run start now? The one decision behind every way a maintenance run starts outside the queue.

The daemon's run queue applies `max_concurrent_runs`, `tag_concurrency_limits` and (with
`pools: granularity: run`) the pool limits, counted in runs, from the instance's configuration; a
run started in process must obey the very same numbers, so this function takes them from that
configuration and the runs in progress from the run storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunInProgress:
    run_id: str
    job_name: str
    status: str
    tags: Mapping[str, str] = field(default_factory=dict)
    pools: frozenset[str] = frozenset()  # the pools of its steps


@dataclass(frozen=True)
class TagLimit:
    """One entry of `concurrency: runs: tag_concurrency_limits`."""

    key: str
    limit: int
    value: str | None = None  # None: any value counts together
    per_unique_value: bool = False

    @classmethod
    def from_instance_config(cls, entry: Mapping) -> TagLimit:
        value = entry.get("value")
        if isinstance(value, Mapping):
            return cls(key=entry["key"], limit=int(entry["limit"]), per_unique_value=bool(value.get("applyLimitPerUniqueValue")))
        return cls(key=entry["key"], limit=int(entry["limit"]), value=None if value is None else str(value))

    def applies_to(self, tags: Mapping[str, str]) -> bool:
        return self.key in tags and (self.value is None or tags[self.key] == self.value)

    def same_bucket(self, candidate: Mapping[str, str], other: Mapping[str, str]) -> bool:
        if not (self.applies_to(candidate) and self.applies_to(other)):
            return False
        return not self.per_unique_value or candidate[self.key] == other[self.key]


@dataclass(frozen=True)
class StartDecision:
    allowed: bool
    reason: str = ""
    blocking: tuple[RunInProgress, ...] = ()
    same_task: bool = False  # blocked by a run of the same task (not only by the overall limit)


def may_start(
    candidate_tags: Mapping[str, str],
    in_progress: Sequence[RunInProgress],
    max_concurrent_runs: int | None,
    tag_limits: Sequence[TagLimit],
    task_tag: str = "maintenance/task",
    candidate_pools: frozenset[str] = frozenset(),
    run_pool_limit: int | None = None,
) -> StartDecision:
    """Whether a run with `candidate_tags` and steps in `candidate_pools` may start beside
    `in_progress` (which excludes itself).

    `run_pool_limit` is the instance's pool limit when pools are counted per run: a pool then
    admits that many runs whose steps use it, whatever their tags (an asset backfill's runs carry
    none of the job's). Tag and pool limits are checked before the overall limit so the answer
    names the run of the same task when there is one: that is the conflict a person can act on.
    """
    for limit in tag_limits:
        if not limit.applies_to(candidate_tags):
            continue
        sharing = tuple(run for run in in_progress if limit.same_bucket(candidate_tags, run.tags))
        if len(sharing) >= limit.limit:
            bucket = f"{limit.key}={candidate_tags[limit.key]}"
            return StartDecision(
                False,
                f"{len(sharing)} run(s) with {bucket} already in progress (limit {limit.limit}): "
                + ", ".join(f"{run.run_id} ({run.status})" for run in sharing),
                sharing,
                same_task=limit.key == task_tag,
            )
    for pool in sorted(candidate_pools) if run_pool_limit is not None else []:
        sharing = tuple(run for run in in_progress if pool in run.pools)
        if len(sharing) >= run_pool_limit:
            return StartDecision(
                False,
                f"{len(sharing)} run(s) using pool {pool} already in progress (limit {run_pool_limit}): "
                + ", ".join(f"{run.run_id} {run.job_name} ({run.status})" for run in sharing),
                sharing,
                same_task=True,
            )
    if max_concurrent_runs is not None and max_concurrent_runs >= 0 and len(in_progress) >= max_concurrent_runs:
        return StartDecision(
            False,
            f"{len(in_progress)} run(s) already in progress (max_concurrent_runs {max_concurrent_runs}): "
            + ", ".join(f"{run.run_id} {run.job_name} ({run.status})" for run in in_progress),
            tuple(in_progress),
        )
    return StartDecision(True)
