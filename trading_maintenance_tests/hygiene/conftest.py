"""Fixtures of the hygiene tests: a Dagster instance and a job runner with the real resources."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def run_job(instance, make_resources):
    def run(job, database_url: str = "", config: Path | None = None, run_config: dict | None = None, raise_on_error: bool = False):
        return job.execute_in_process(
            run_config=run_config or {},
            resources=make_resources(database_url=database_url, config=config),
            instance=instance,
            raise_on_error=raise_on_error,
        )

    return run


def make_file(path: Path, content: bytes | str = b"x" * 100, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def op_output(result, op_name: str) -> dict:
    return result.output_for_node(op_name)


NOW = time.time()
