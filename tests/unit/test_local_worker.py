"""A worker process of the local Lambda platform: results, crashes and timeouts of its handler."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from selfheal_dev.local.functions import FunctionSpec, Worker

HANDLER = """
import os, time

def handler(event, context):
    if event.get("exit"):
        os._exit(3)
    time.sleep(event.get("sleep_s", 0))
    return {"echo": event, "request_id": context.aws_request_id}
"""


def sample_spec(tmp_path: Path) -> FunctionSpec:
    (tmp_path / "index.py").write_text(HANDLER)
    return FunctionSpec(
        name="unit-fn",
        arn="arn:aws:lambda:us-east-1:123456789012:function:unit-fn",
        logical_key="Stack/Fn",
        handler="index.handler",
        timeout_s=1.0,
        memory_mb=128,
        environment={},
        code_dir=tmp_path,
        layer_dirs=[],
        log_group="/aws/lambda/unit-fn",
        access_key="ASIALOCALUNIT000000",
    )


@pytest.fixture
def worker(tmp_path: Path) -> Any:
    w = Worker(sample_spec(tmp_path), "http://127.0.0.1:9", lambda _spec, _stream, _line: None)
    yield w
    w.kill()


def test_a_worker_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    # Given a worker started from a pool thread that then retires (a lower reserved concurrency)
    started: list[Worker] = []
    thread = threading.Thread(
        target=lambda: started.append(Worker(sample_spec(tmp_path), "http://127.0.0.1:9", lambda *_: None))
    )
    thread.start()
    thread.join()
    [w] = started
    try:
        # When another thread invokes it / Then it is still there to serve
        result = w.invoke({"n": 1}, 2.0, "after-retire")
        assert result.ok, result.error
    finally:
        w.kill()


def test_invocations_on_one_warm_worker_each_get_their_own_reply(worker: Worker) -> None:
    first = worker.invoke({"n": 1}, 1.0, "req-1")
    second = worker.invoke({"n": 2}, 1.0, "req-2")
    assert first.ok and first.result == {"echo": {"n": 1}, "request_id": "req-1"}
    assert first.init_ms is not None  # the cold start
    assert second.ok and second.result == {"echo": {"n": 2}, "request_id": "req-2"}


def test_a_worker_that_exits_is_an_exit_error_not_a_timeout(worker: Worker) -> None:
    assert worker.invoke({}, 1.0, "warm").ok
    result = worker.invoke({"exit": True}, 30.0, "crash")  # unnoticed, it would time out instead
    assert not result.ok and result.error is not None
    assert result.error["errorType"] == "Runtime.ExitError"
    assert not worker.alive


def test_a_handler_past_its_timeout_is_killed(worker: Worker) -> None:
    result = worker.invoke({"sleep_s": 5}, 0.5, "slow")
    assert not result.ok and result.timed_out
    assert result.error is not None and result.error["errorType"] == "Sandbox.Timedout"
    assert not worker.alive
