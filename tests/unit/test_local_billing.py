"""The local runtime's side of billed cost: real-shaped REPORT lines, subscription delivery, endpoints."""

from __future__ import annotations

import math
import queue
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentops_monitoring.billing import decode_subscription, parse_report
from selfheal_dev.local.endpoints import engineer_endpoint
from selfheal_dev.local.functions import ENGINEER_ENDPOINT_VARS, FunctionSpec, InvocationResult, Worker
from selfheal_dev.local.runtime import report_line
from selfheal_dev.local.subscriptions import SubscriptionFilter, SubscriptionRouter, TextPattern


def spec(name: str = "selfheal-dev-engineer", agent: str = "engineer", memory_mb: int = 512) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        logical_key="k",
        handler=f"{agent}.handler.handler",
        timeout_s=180,
        memory_mb=memory_mb,
        environment={"AGENT_NAME": agent},
        code_dir=Path("."),
        layer_dirs=[],
        log_group=f"/aws/lambda/{name}",
        access_key="ASIALOCALTEST",
    )


# ---------------------------------------------------------------------- REPORT lines


def test_a_cold_start_report_line_bills_the_init_phase_like_aws():
    # Given a cold invocation: 300.25 ms of handler, 845.61 ms of init
    result = InvocationResult(
        ok=True, duration_ms=300.25, init_ms=845.61, max_memory_mb=97, request_id=str(uuid.uuid4())
    )
    line = report_line(spec(), result)
    # Then the line is tab-separated, carries Init Duration, and Billed Duration includes init
    assert line.startswith(f"REPORT RequestId: {result.request_id}\tDuration: 300.25 ms\t")
    assert "\tBilled Duration: 1146 ms\t" in line and "\tInit Duration: 845.61 ms\t" in line
    assert "\tMemory Size: 512 MB\t" in line and line.endswith("\t")
    report = parse_report(line)
    assert report is not None and report.billed_ms == math.ceil(300.25 + 845.61) and report.init_ms == 845.61


def test_a_warm_report_line_has_no_init_and_rounds_up_to_the_millisecond():
    result = InvocationResult(ok=True, duration_ms=12.01, init_ms=None, max_memory_mb=90, request_id=str(uuid.uuid4()))
    report = parse_report(report_line(spec(), result))
    assert report is not None and report.init_ms is None and report.billed_ms == 13


def test_a_timed_out_invocation_reports_its_status():
    result = InvocationResult(ok=False, duration_ms=180_000.0, request_id=str(uuid.uuid4()), timed_out=True)
    line = report_line(spec(), result)
    assert "\tStatus: timeout\t" in line and parse_report(line).billed_ms == 180_000


# ---------------------------------------------------------------------- subscription filters


@pytest.mark.parametrize(
    "pattern, message, matches",
    [
        ('"REPORT RequestId"', "REPORT RequestId: abc\tDuration: 1 ms", True),
        ('"REPORT RequestId"', "START RequestId: abc Version: $LATEST", False),
        ('"REPORT RequestId"', "report requestid", False),  # case-sensitive, like CloudWatch Logs
        ("ERROR -timeout", "ERROR: disk full", True),
        ("ERROR -timeout", "ERROR: timeout", False),
        ("?ERROR ?WARN", "WARN low memory", True),
        ("?ERROR ?WARN", "INFO ok", False),
        ("", "anything at all", True),
        ('{ $.level = "ERROR" }', '{"level": "ERROR"}', False),  # JSON patterns are not emulated: no delivery
    ],
)
def test_text_filter_patterns(pattern, message, matches):
    assert TextPattern.parse(pattern).matches(message) is matches


class FakePool:
    def __init__(self, function_spec: FunctionSpec) -> None:
        self.spec = function_spec
        self.submitted: queue.Queue[Any] = queue.Queue()

    def submit(self, invocation: Any) -> None:
        self.submitted.put(invocation)


def test_matching_lines_are_delivered_as_one_cloudwatch_logs_payload_per_batch():
    # Given a filter on the engineer's log group to the reconciler
    reconciler = FakePool(spec("selfheal-dev-billing", agent="billing"))
    router = SubscriptionRouter.__new__(SubscriptionRouter)
    router.pools = {"selfheal-dev-billing": reconciler}
    router.on_failure = {"selfheal-dev-billing": "arn:aws:sqs:us-east-1:000000000000:selfheal-dev-billing-failures"}
    router.delivered = 0
    router.filters = {
        "/aws/lambda/selfheal-dev-engineer": [
            SubscriptionFilter(
                "selfheal-dev-billed-cost",
                "/aws/lambda/selfheal-dev-engineer",
                TextPattern.parse('"REPORT RequestId"'),
                "selfheal-dev-billing",
            )
        ]
    }
    rid = str(uuid.uuid4())
    events = [
        {"timestamp": 1_000, "message": f"START RequestId: {rid} Version: $LATEST"},
        {"timestamp": 1_001, "message": '{"level": "INFO", "message": "fix proposed"}'},
        {
            "timestamp": 1_002,
            "message": f"REPORT RequestId: {rid}\tDuration: 1.00 ms\tBilled Duration: 2 ms\t"
            "Memory Size: 512 MB\tMax Memory Used: 80 MB\t",
        },
    ]
    # When the runtime flushes that batch
    assert router.deliver("/aws/lambda/selfheal-dev-engineer", "2026/11/27/[$LATEST]abc", events) == 1
    assert router.deliver("/aws/lambda/selfheal-dev-qa", "s", events) == 0  # no filter there
    # Then the reconciler gets the REPORT line only, in the CloudWatch Logs subscription shape, async with retries
    invocation = reconciler.submitted.get_nowait()
    payload = decode_subscription(invocation.event)
    assert payload["messageType"] == "DATA_MESSAGE" and payload["logGroup"] == "/aws/lambda/selfheal-dev-engineer"
    assert payload["subscriptionFilters"] == ["selfheal-dev-billed-cost"]
    assert [e["message"] for e in payload["logEvents"]] == [events[2]["message"]]
    assert len(payload["logEvents"][0]["id"]) == 56
    assert invocation.max_retries == 2 and invocation.dead_letter_arn.endswith("billing-failures")


# ---------------------------------------------------------------------- the Engineer's endpoint


def test_the_engineer_and_only_the_engineer_gets_the_shells_endpoint_variables(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://llm-gateway.example.com")
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9999")
    monkeypatch.setenv("SOME_OTHER_SECRET", "do-not-pass")

    def environment(function_spec: FunctionSpec) -> dict[str, str]:
        fake = SimpleNamespace(spec=function_spec, endpoint="http://127.0.0.1:4566", log_stream="s")
        return Worker._environment(fake)  # type: ignore[arg-type]

    engineer = environment(spec())
    assert engineer["ANTHROPIC_BASE_URL"] == "https://llm-gateway.example.com"
    assert engineer["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == "http://127.0.0.1:9999"
    assert "SOME_OTHER_SECRET" not in engineer
    qa = environment(spec("selfheal-dev-qa", agent="qa"))
    assert not any(k in qa for k in ENGINEER_ENDPOINT_VARS)


class FakeSsm:
    def __init__(self, values: dict[str, str]) -> None:
        self._parameters = {f"/selfheal/dev/{k}": v for k, v in values.items()}

    def get_parameter(self, name: str) -> Any:
        return SimpleNamespace(value=self._parameters[name])


@pytest.mark.parametrize(
    "values, environ, expected",
    [
        ({"engineer-provider": "runbook"}, {}, ("runbook", "none", "-")),
        ({"engineer-provider": "anthropic"}, {}, ("anthropic", "https://api.anthropic.com", "SDK default")),
        (
            {"engineer-provider": "anthropic"},
            {"ANTHROPIC_BASE_URL": "http://gw"},
            ("anthropic", "http://gw", "ANTHROPIC_BASE_URL"),
        ),
        (
            {"engineer-provider": "anthropic", "anthropic-base-url": "https://ssm-gw"},
            {"ANTHROPIC_BASE_URL": "http://gw"},
            ("anthropic", "https://ssm-gw", "SSM anthropic-base-url"),
        ),
        (
            {"engineer-provider": "bedrock"},
            {},
            ("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com", "SDK default"),
        ),
        (
            {"engineer-provider": "bedrock"},
            {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://fake"},
            ("bedrock", "http://fake", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"),
        ),
    ],
)
def test_local_status_names_the_engineers_endpoint(values, environ, expected):
    found = engineer_endpoint(FakeSsm(values), environ)
    assert (found["provider"], found["source"]) == (expected[0], expected[2])
    assert found["endpoint"].startswith(expected[1])


def test_selfheal_costs_says_how_much_lambda_cost_is_billed_and_how_much_still_estimated():
    from selfheal.cli import format_costs

    text = format_costs(
        {
            "window_days": 1,
            "total_usd": 0.01,
            "by_kind": {"lambda": 0.000146},
            "lambda": {
                "total_usd": 0.000146,
                "billed_usd": 0.000143,
                "billed_invocations": 4,
                "estimated_usd": 0.000003,
                "awaiting_report": 1,
                "billed_estimate_usd": 0.00004,
            },
        }
    )
    assert (
        "Lambda $0.000146: billed $0.000143 for 4 invocation(s) from their REPORT lines "
        "(the handlers had estimated $0.000040), estimated $0.000003 for 1 awaiting their REPORT line"
    ) in text
