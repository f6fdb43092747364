"""A property-based pass over the OpenAPI document: no request, however odd, makes the server answer 500."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)


def test_no_request_makes_the_server_answer_500(instance):
    from trading_maintenance_tests.api.conftest import make_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(instance))
    failures = []
    for operation in schema.get_all_operations():
        operation = operation.ok()

        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=operation.as_strategy())
        def call(case):
            # run-all submits every task to the queue: slow on a loaded machine, never a reason to fail here
            response = case.call(timeout=180)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        call()
    assert not failures, failures
