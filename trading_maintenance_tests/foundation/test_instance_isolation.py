"""The suite's guard against a Dagster instance left entered by one test breaking a later one.

A schedule context built outside `with` enters an instance of its own; when the garbage collector
finalises it during a later test, Dagster's current defs-state storage goes back to a closed
instance's and that test's `dg.materialize` fails. The guard in conftest.py exits such an instance
at the end of the test that left it and fails that test instead."""

from __future__ import annotations

import subprocess
import sys

from trading_maintenance.settings import PROJECT_ROOT

LEAKING_THEN_MATERIALIZING = '''
import gc

import dagster as dg

gc.disable()  # the leaked context lives until the collection the next test triggers


@dg.asset
def tiny():
    return 1


def test_a_leaked_schedule_context():
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, resources={"settings": dg.ResourceDefinition.none_resource()})
        assert context.resources.settings is None
        in_a_cycle = [context]
        in_a_cycle.append(in_a_cycle)  # as a tick evaluation leaves it: freed only by the collector


def test_b_materialize_after_the_leak_is_collected():
    with dg.instance_for_test() as instance:
        gc.collect()
        assert dg.materialize([tiny], instance=instance).success
'''


def test_an_instance_left_entered_fails_its_own_test_and_not_a_later_one(tmp_path):
    (tmp_path / "conftest.py").write_text("from trading_maintenance_tests.conftest import _no_leaked_dagster_instance  # noqa: F401\n")
    (tmp_path / "test_leak.py").write_text(LEAKING_THEN_MATERIALIZING)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                             "--rootdir", str(tmp_path), str(tmp_path)],
                            cwd=str(tmp_path), env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert "ERROR at teardown of test_a_leaked_schedule_context" in output, output
    assert "the test left a Dagster instance entered" in output, output
    assert "DagsterInvariantViolationError" not in output, output
    assert "2 passed, 1 error" in output, output  # the leaking test's teardown is the error
