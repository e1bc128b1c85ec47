"""The local runtime's EventBridge router in-process, against a fake Platform.

Rules and targets are real moto objects (put through the events API); what the router does
with them (invoke, retry, dead-letter, publish metrics) lands on the fake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend

from selfheal_dev.local.assembly import ACCOUNT, REGION
from selfheal_dev.local.functions import Invocation, InvocationResult
from selfheal_dev.local.router import Router, Scheduler

FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders-dlq"


class FakeQueues:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


class FakePlatform:
    def __init__(self) -> None:
        self.submitted: list[tuple[str, Invocation]] = []
        self.metrics: list[tuple[str, str, list[dict[str, str]]]] = []
        self.queues = FakeQueues()
        self.lines: list[str] = []
        self.metric_store: Any = None

    def backend(self, service: str) -> Any:
        return self.queues if service == "sqs" else get_backend(service)[ACCOUNT][REGION]  # type: ignore[call-overload]

    def submit(self, function: str, invocation: Invocation) -> None:
        if function != "orders":
            raise LookupError(function)
        self.submitted.append((function, invocation))

    def publish_sns(self, topic_arn: str, message: str, subject: str | None, origin: str) -> str:
        raise AssertionError("no SNS target in these tests")

    def put_platform_event(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the router emits no platform events")

    def platform_metric(
        self, namespace: str, name: str, value: float, dimension_sets: list[dict[str, str]], unit: str | None = None
    ) -> None:
        self.metrics.append((namespace, name, dimension_sets))

    def log_platform(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def events() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("events", region_name=REGION)


def rule(events: Any, name: str, *, state: str = "ENABLED", **target: Any) -> Any:
    events.put_rule(Name=name, EventPattern=json.dumps({"source": ["com.example.orders"]}), State=state)
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN, **target}])
    return get_backend("events")[ACCOUNT][REGION].event_buses["default"].rules[name]  # type: ignore[call-overload]


def raw_event(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "ev-1",
        "source": "com.example.orders",
        "detail-type": "OrderFailed",
        "account": ACCOUNT,
        "region": REGION,
        "time": 1_700_000_000,
        "resources": [],
        "detail": detail,
    }


def test_a_disabled_rule_delivers_nothing_and_an_enabled_one_sends_the_transformed_input(events):
    platform = FakePlatform()
    router = Router(platform)
    transformer = {"InputPathsMap": {"order": "$.detail.order_id"}, "InputTemplate": '{"order": <order>, "n": 1}'}
    enabled = rule(events, "orders-enabled", InputTransformer=transformer)
    disabled = rule(events, "orders-disabled", state="DISABLED")

    router.on_event(disabled, raw_event({"order_id": "o-1"}))
    router.on_event(enabled, raw_event({"order_id": "o-1"}))

    assert [(fn, inv.event, inv.source) for fn, inv in platform.submitted] == [
        ("orders", {"order": "o-1", "n": 1}, enabled.arn)
    ]
    assert router.counts["skipped_disabled"] == 1
    assert [name for _, name, _ in platform.metrics] == ["MatchedEvents", "TriggeredRules"]


def test_a_failing_function_is_retried_as_its_policy_says_then_dead_lettered(events):
    platform = FakePlatform()
    router = Router(platform, retry_base_s=0.001, retry_cap_s=0.005)
    failing = rule(events, "orders-failing", RetryPolicy={"MaximumRetryAttempts": 2}, DeadLetterConfig={"Arn": DLQ_ARN})
    router.on_event(failing, raw_event({"order_id": "o-2"}))

    error = InvocationResult(ok=False, error={"errorType": "ValueError", "errorMessage": "bad order"})
    for attempt in range(3):
        deadline = time.time() + 5
        while len(platform.submitted) <= attempt and time.time() < deadline:
            time.sleep(0.005)
        router.on_function_result(platform.submitted[attempt][1], error)
    assert router.pending_retries() == 0

    assert len(platform.submitted) == 3  # the first try and MaximumRetryAttempts retries
    [dead] = platform.queues.sent
    attributes = {k: v["StringValue"] for k, v in dead["message_attributes"].items()}
    assert dead["queue_name"] == "orders-dlq"
    assert attributes == {
        "RULE_ARN": failing.arn,
        "TARGET_ARN": FUNCTION_ARN,
        "ERROR_CODE": "FUNCTION_ERROR",
        "ERROR_MESSAGE": "ValueError: bad order",
        "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
        "RETRY_ATTEMPTS": "2",
    }
    assert json.loads(dead["message_body"])["detail"] == {"order_id": "o-2"}
    assert ("AWS/Events", "FailedInvocations") in {(ns, name) for ns, name, _ in platform.metrics}


def test_a_target_outside_the_app_is_a_delivery_failure_not_a_crash(events):
    platform = FakePlatform()
    router = Router(platform)
    events.put_rule(Name="elsewhere", EventPattern=json.dumps({"source": ["com.example.orders"]}))
    events.put_targets(Rule="elsewhere", Targets=[{"Id": "fn", "Arn": FUNCTION_ARN.replace("orders", "billing")}])
    elsewhere = get_backend("events")[ACCOUNT][REGION].event_buses["default"].rules["elsewhere"]  # type: ignore[call-overload]

    router.on_event(elsewhere, raw_event({}))

    assert platform.submitted == [] and router.counts["failed"] == 1
    assert any("no DLQ" in line for line in platform.lines)


def test_the_scheduler_fires_the_matching_rate_rules_on_request(events):
    platform = FakePlatform()
    router = Router(platform)
    events.put_rule(Name="Analyzer-hourly", ScheduleExpression="rate(1 hour)")
    events.put_targets(Rule="Analyzer-hourly", Targets=[{"Id": "fn", "Arn": FUNCTION_ARN}])
    events.put_rule(Name="Manager-sweep", ScheduleExpression="rate(5 minutes)")

    fired = Scheduler(platform, router).fire_matching("Analyzer")

    assert fired == ["Analyzer-hourly"]
    [(_, invocation)] = platform.submitted
    assert invocation.event["detail-type"] == "Scheduled Event" and invocation.event["source"] == "aws.events"
