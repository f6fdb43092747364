"""The status and history answers are cached for a second and refreshed in the background: a request
never waits behind a refresh while an answer within its bound exists, a refresh begun before a change
made through the API is not kept, and an answer past its bound is not served."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from trading_maintenance.api import context as api_context
from trading_maintenance.api.context import ApiContext

KEY = "answer"
ANSWER = dict[str, int]


def _ctx() -> ApiContext:
    return ApiContext(instance=None, settings=None, token=None)


def _ask(ctx: ApiContext, compute) -> bytes:
    return asyncio.run(ctx.recent_json(KEY, compute, ANSWER)).body


def _age(ctx: ApiContext, seconds: float) -> None:
    computed_at, body = ctx._answers[("json", KEY)]
    ctx._answers[("json", KEY)] = (computed_at - seconds, body)


def _refresh_finished(ctx: ApiContext) -> None:
    deadline = time.monotonic() + 30
    while KEY in ctx._refreshing:
        assert time.monotonic() < deadline, "the background refresh never finished"
        time.sleep(0.01)


class Gate:
    """A computation that reports it started and then waits until released."""

    def __init__(self, value: int, error: Exception | None = None):
        self.value, self.error = value, error
        self.started, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        self.started.set()
        assert self.release.wait(30), "never released"
        if self.error is not None:
            raise self.error
        return {"n": self.value}


def test_a_stale_answer_is_served_while_one_background_thread_refreshes_it():
    ctx = _ctx()
    assert _ask(ctx, lambda: {"n": 1}) == b'{"n":1}'
    _age(ctx, api_context.ANSWER_TTL_SECONDS + 0.5)
    refresh = Gate(2)
    # The refresh is blocked: the request still answers, with the last answer.
    assert _ask(ctx, refresh) == b'{"n":1}'
    assert refresh.started.wait(30)
    assert _ask(ctx, refresh) == b'{"n":1}'  # one refresh at a time
    refresh.release.set()
    _refresh_finished(ctx)
    assert refresh.calls == 1
    assert _ask(ctx, lambda: {"n": 3}) == b'{"n":2}'


def test_a_refresh_begun_before_forget_answers_is_not_kept():
    ctx = _ctx()
    _ask(ctx, lambda: {"n": 1})
    _age(ctx, api_context.ANSWER_TTL_SECONDS + 0.5)
    before_change = Gate(2)
    assert _ask(ctx, before_change) == b'{"n":1}'
    assert before_change.started.wait(30)
    ctx.forget_answers()  # what a submitted run or a paused schedule does
    before_change.release.set()
    _refresh_finished(ctx)
    assert ("json", KEY) not in ctx._answers
    assert _ask(ctx, lambda: {"n": 3}) == b'{"n":3}'


def test_a_failing_refresh_keeps_the_last_answer_until_its_bound_then_requests_see_the_error():
    ctx = _ctx()
    _ask(ctx, lambda: {"n": 1})
    _age(ctx, api_context.ANSWER_TTL_SECONDS + 0.5)
    failing = Gate(0, RuntimeError("storage unreadable"))
    failing.release.set()
    assert _ask(ctx, failing) == b'{"n":1}'
    _refresh_finished(ctx)
    assert failing.calls == 1
    assert ctx._answers[("json", KEY)][1] == b'{"n":1}'
    _age(ctx, api_context.ANSWER_MAX_STALE_SECONDS)
    with pytest.raises(RuntimeError, match="storage unreadable"):
        _ask(ctx, failing)
    assert _ask(ctx, lambda: {"n": 4}) == b'{"n":4}'


def test_warm_up_computes_the_status_and_default_history_the_routes_serve(instance):
    from fastapi.testclient import TestClient

    from trading_maintenance.api.routes import runs
    from trading_maintenance_tests.api.conftest import make_app

    app = make_app(instance)
    ctx = app.state.ctx
    runs.warm_up(ctx)
    status, history = ctx._answers[("json", "status")], ctx._answers[("json", ("history", 50, None))]
    with TestClient(app) as client:
        assert client.get("/maintenance/status").content == status[1]
        assert client.get("/maintenance/history").content == history[1] == b"[]"
