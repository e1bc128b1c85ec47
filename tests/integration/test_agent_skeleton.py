"""The agent skeleton (selfheal_core/agent.py) on moto: screening, lazy idempotency, opt-out routes, rejections."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from moto import mock_aws

from selfheal_core import aws
from selfheal_core.agent import Route, agent_handler
from selfheal_core.config import get_settings
from selfheal_core.events import InvalidEvent
from tests.support.tables import create_tables


class Monitor:
    """Records what the skeleton tells the monitor."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def begin_invocation(self, event: Any) -> None:
        self.calls.append(("begin", None))

    def end_invocation(self, context: Any, duration_s: float, *, success: bool) -> None:
        self.calls.append(("end", success))

    def settle(self, context: Any) -> None:
        self.calls.append(("settle", None))

    def hold(self, operation: dict[str, Any]) -> None:
        aws.client("dynamodb").update_item(**operation["Update"])  # written at once: this fake holds nothing

    def bind(self, *, incident_id: str | None = None, correlation_id: str | None = None) -> None:
        self.calls.append(("bind", incident_id))

    def record_event(self, event_type: Any, data: dict[str, Any] | None = None) -> None:
        self.calls.append(("event", event_type))


@pytest.fixture
def settings():
    with mock_aws():
        aws.reset_clients()
        s = get_settings()
        create_tables(s.decisions_table_name, s.monitoring_table_name, s.idempotency_table_name)
        yield s
        aws.reset_clients()


def idempotency_records(settings) -> int:
    return boto3.client("dynamodb").scan(TableName=settings.idempotency_table_name)["Count"]


def event(detail_type: str, **detail: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "detail-type": detail_type, "source": "test", "detail": detail}


def build(settings, routes, monitor=None):
    ran: list[str] = []
    handler = agent_handler(
        "manager",
        routes(ran),
        settings=settings,
        monitor=monitor or Monitor(),
        ports=lambda context: {"built": True},
        label="the Test agent",
    )
    return handler, ran


def test_a_route_runs_once_per_key_and_gets_the_parse_result_and_ports(settings, lambda_context):
    def routes(ran):
        def handle(call):
            ran.append(call.parsed)
            return {"action": "done", "ports": call.ports["built"]}

        return {"Ping": Route(handle, parse=lambda e: e["detail"]["n"])}

    handler, ran = build(settings, routes)
    first = event("Ping", n=7)
    assert handler(first, lambda_context) == {"action": "done", "ports": True}
    assert handler(first, lambda_context) == {"action": "done", "ports": True}  # the same delivery again
    assert ran == [7]
    assert idempotency_records(settings) == 1


def test_refused_events_are_recorded_and_never_reach_idempotency(settings, lambda_context):
    def routes(ran):
        def parse(e):
            raise InvalidEvent("n is missing")

        return {"Ping": Route(lambda call: ran.append("ran") or {}, parse=parse)}

    monitor = Monitor()
    handler, ran = build(settings, routes, monitor)
    assert handler(event("Pong"), lambda_context)["reason"] == "the Test agent does not handle 'Pong'"
    assert handler(event("ping"), lambda_context)["reason"] == (
        "the Test agent does not handle 'ping'; detail-types are case-sensitive: did you mean 'Ping'?"
    )
    assert handler(event("Ping"), lambda_context)["reason"] == "n is missing"
    assert handler(["not", "an", "object"], lambda_context)["reason"] == "event must be a JSON object"
    assert handler({"detail-type": ["unhashable"]}, lambda_context)["action"] == "rejected"
    assert ran == [] and idempotency_records(settings) == 0
    assert [c for c in monitor.calls if c[0] == "event"] == [("event", "event_rejected")] * 5
    assert ("end", True) in monitor.calls


def test_a_route_without_idempotency_runs_every_time_and_an_invalid_event_inside_is_a_rejection(
    settings, lambda_context
):
    def routes(ran):
        def handle(call):
            ran.append("ran")
            if len(ran) == 2:
                raise InvalidEvent("not due")
            return {"action": "done"}

        return {"Due": Route(handle, parse=lambda e: None, idempotent=False)}

    handler, ran = build(settings, routes)
    due = event("Due")
    assert handler(due, lambda_context) == {"action": "done"}
    assert handler(due, lambda_context) == {"action": "rejected", "reason": "not due"}
    assert ran == ["ran", "ran"] and idempotency_records(settings) == 0


def test_a_route_for_an_agent_step_without_an_event_model_is_refused_when_built(settings):
    with pytest.raises(ValueError, match="no event model"):
        agent_handler(
            "manager", {"NoSuchStep": lambda call: {}}, settings=settings, monitor=Monitor(), ports=lambda context: None
        )


def test_a_duplicate_delivered_while_the_first_runs_waits_for_its_answer_instead_of_failing(settings, lambda_context):
    import threading
    import time

    # Given a step that takes a moment, and the same delivery arriving again while it runs
    # (two people approving at once)
    started = threading.Event()

    def routes(ran):
        def handle(call):
            ran.append(call.parsed)
            started.set()
            time.sleep(0.6)
            return {"action": "done"}

        return {"Ping": Route(handle, parse=lambda e: e["detail"]["n"])}

    handler, ran = build(settings, routes)
    first = event("Ping", n=1)
    answers: list[dict] = []
    runner = threading.Thread(target=lambda: answers.append(handler(first, lambda_context)))
    runner.start()
    assert started.wait(10)

    # When the duplicate is handled meanwhile
    duplicate = handler(first, lambda_context)
    runner.join(10)

    # Then it returns the first one's answer (no error for Lambda to count), and the step ran once
    assert duplicate == answers[0] == {"action": "done"}
    assert ran == [1]
