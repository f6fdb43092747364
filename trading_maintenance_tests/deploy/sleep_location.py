"""Test-only code location for the process-layout test: a maintenance task whose one op sleeps, so
a run can outlive TASK_TIMEOUT_MINUTES or have its process killed mid-run. It is built with the
project's `MaintenanceTask`, so its job carries the same tags and its op the same pool as a real
task's, and the real instance's limits apply to it unchanged."""

import time

import dagster as dg

from trading_maintenance.defs.task import MaintenanceTask

LAYOUT_SLEEP = MaintenanceTask("layout_sleep", "Test only: sleeps for the configured seconds.", in_run_all=False)


class SleepConfig(dg.Config):
    seconds: float = 600.0


@dg.op(pool=LAYOUT_SLEEP.pool)
def sleep_for(config: SleepConfig) -> None:
    time.sleep(config.seconds)


@LAYOUT_SLEEP.op_job("layout_sleep_job")
def layout_sleep_job():
    sleep_for()


defs = dg.Definitions(jobs=[layout_sleep_job])
