"""Every body the API accepts and every answer it gives, so /openapi.json describes them all."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PARTITION_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
RUN_ID_PATTERN = r"^[0-9a-f][0-9a-f-]{7,63}$"
NAME_PATTERN = r"^[A-Za-z0-9_]{1,100}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    message: str = Field(description="what went wrong, naming the field, task or run")
    valid: list[str] | None = Field(None, description="the accepted names, when a name was unknown")


class RunRequest(_Body):
    dry_run: bool = Field(False, description="report what would change without changing anything")
    partition: str | None = Field(None, pattern=PARTITION_PATTERN, max_length=10,
                                  description="partition key (YYYY-MM-DD) of a partitioned task; default: the latest complete one")


class TaskInfo(BaseModel):
    name: str
    job: str
    description: str
    partitioned: str | None = Field(None, description="monthly or daily when the task takes a partition")
    in_run_all: bool


class RunSubmitted(BaseModel):
    task: str
    job: str
    run_id: str
    status: str = Field(description="the run's status in Dagster's run storage right after submission (QUEUED)")
    partition: str | None = None
    dry_run: bool = False


class RunAllSubmitted(BaseModel):
    runs: list[RunSubmitted]
    skipped: list[str] = Field(default_factory=list, description="tasks not submitted, with the reason")


class HealthComponent(BaseModel):
    name: str
    status: str
    score: float
    value: float | None = None
    unit: str = ""
    reason: str = ""


class Health(BaseModel):
    score: float | None
    status: str | None
    checked_at: str
    run_id: str
    reasons: list[str]
    components: list[HealthComponent]


class HealthPoint(BaseModel):
    at: str
    score: float
    status: str | None = None


class HealthHistory(BaseModel):
    hours: int
    points: list[HealthPoint]


class RunSummary(BaseModel):
    run_id: str
    job: str
    task: str
    status: str
    trigger: str
    partition: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None


class TaskResult(BaseModel):
    task: str
    finished_at: str | None = None
    status: str | None = None
    run_id: str | None = None
    dry_run: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict, description="the rest of maintenance:result:{task}")


class ActiveAlert(BaseModel):
    key: str
    severity: str
    title: str
    message: str
    created_at: str
    source: str = ""


class Status(BaseModel):
    health: Health | None
    runs_in_progress: list[RunSummary]
    queued_runs: list[RunSummary]
    last_results: list[TaskResult]
    active_alerts: list[ActiveAlert]
    problems: list[str] = Field(default_factory=list, description="sources that could not be read (e.g. Redis down)")


class RunDetail(RunSummary):
    tags: dict[str, str]
    failures: list[str]
    result: TaskResult | None = Field(None, description="the task's published result when it is this run's")
    metadata: dict[str, Any] = Field(default_factory=dict, description="numbers and texts the run's steps recorded")


class ScheduleState(BaseModel):
    name: str
    kind: Literal["schedule", "sensor"]
    job: str
    cron: str
    timezone: str
    status: Literal["RUNNING", "STOPPED"]
    next_tick: str | None = None
    description: str = ""


class ScheduleList(BaseModel):
    items: list[ScheduleState]


class WindowMetrics(BaseModel):
    days: int
    runs: int
    succeeded: int
    failed: int
    success_rate: float | None = Field(description="succeeded / finished runs, None without finished runs")
    duration_p50_s: float | None
    duration_p95_s: float | None
    duration_max_s: float | None
    bytes_freed: int
    files_processed: int


class TaskMetrics(BaseModel):
    task: str
    job: str
    windows: list[WindowMetrics]


class MetricsAnswer(BaseModel):
    tasks: list[TaskMetrics]


class ReportRequest(_Body):
    report_type: Literal["daily", "weekly", "custom"] = "daily"
    format_type: Literal["html", "json", "csv"] = "json"
    include_details: bool = Field(True, description="every section; false: the report type's default sections")
    since: date | None = Field(None, description="first day of a custom report")
    until: date | None = Field(None, description="last day of a custom report")


class ReportGenerated(BaseModel):
    report_type: str
    format_type: str
    path: str | None = None
    content: str | None = Field(None, description="the report itself, unless larger than 2 MB")


class ApiHealth(BaseModel):
    status: Literal["ok"]
    version: str
