"""Local routing comes from the synthesized template only.

The app under test is `build_app` plus what a developer would add in CDK code: a new rule
targeting an existing function, a disabled rule, and a failing function behind a rule with
a retry policy and a dead-letter queue. Nothing else changes, and the local runtime (a
child process, exactly as `selfheal local up` runs) must route all of it like EventBridge.
"""

from __future__ import annotations

import json
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from selfheal_core.catalog import UNROUTED_RULE_ID

# The runtime runs as a child process here (as `selfheal local up` runs it): slow, so end-to-end.
pytestmark = pytest.mark.e2e

PROBE = "SelfhealLocalProbe"
DISABLED_PROBE = "SelfhealLocalDisabledProbe"
FAILING_PROBE = "SelfhealLocalFailingProbe"
RETRIES = 2


def build_extended_app(app: Any) -> dict[str, Any]:
    """build_app's stacks plus three rules added the way a developer adds them: in CDK only."""
    from aws_cdk import Duration
    from aws_cdk import aws_events as events
    from aws_cdk import aws_events_targets as targets
    from aws_cdk import aws_lambda as lambda_

    from stacks import constants
    from stacks.app_builder import build_app
    from stacks.constructs.agent_function import dead_letter_queue
    from stacks.nag import acknowledge

    stacks = build_app(app)
    pipeline = stacks["pipeline"]
    manager = pipeline.functions["manager"]
    manager_dlq = pipeline.routes.dead_letter_queues["manager"]
    events.Rule(
        pipeline,
        "LocalProbeRule",
        event_bus=pipeline.bus,
        event_pattern=events.EventPattern(detail_type=[PROBE], source=events.Match.prefix("com.example.")),
        targets=[targets.LambdaFunction(manager, dead_letter_queue=manager_dlq, retry_attempts=2)],
    )
    events.Rule(
        pipeline,
        "LocalDisabledRule",
        event_bus=pipeline.bus,
        enabled=False,
        event_pattern=events.EventPattern(detail_type=[DISABLED_PROBE]),
        targets=[targets.LambdaFunction(manager, dead_letter_queue=manager_dlq, retry_attempts=2)],
    )
    failing = lambda_.Function(
        pipeline,
        "LocalFailingProbe",
        runtime=constants.RUNTIME,
        handler="index.handler",
        memory_size=128,
        timeout=Duration.seconds(5),
        tracing=lambda_.Tracing.ACTIVE,
        code=lambda_.Code.from_inline(
            "def handler(event, context):\n    raise RuntimeError('probe failure for ' + event['id'])\n"
        ),
    )
    failing_dlq = dead_letter_queue(pipeline, "LocalFailingProbeDlq", "selfheal-dev-local-probe-dlq")
    events.Rule(
        pipeline,
        "LocalFailingRule",
        event_bus=pipeline.bus,
        event_pattern=events.EventPattern(detail_type=[FAILING_PROBE]),
        targets=[targets.LambdaFunction(failing, dead_letter_queue=failing_dlq, retry_attempts=RETRIES)],
    )
    isolated = lambda_.Function(
        pipeline,
        "LocalTenantProbe",
        function_name="selfheal-dev-tenant-probe",
        runtime=constants.RUNTIME,
        handler="index.handler",
        memory_size=128,
        timeout=Duration.seconds(5),
        tracing=lambda_.Tracing.ACTIVE,
        tenancy_config=lambda_.TenancyConfig.PER_TENANT,
        code=lambda_.Code.from_inline(
            "import os\nSEEN = []\n"
            "def handler(event, context):\n"
            "    SEEN.append(event['n'])\n"
            "    return {'pid': os.getpid(), 'seen': SEEN}\n"
        ),
    )
    for fn in (failing, isolated):
        for rule_id in (
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "AwsSolutions-IAM5[Resource::*]",
            "Serverless-LambdaDLQ",
        ):
            acknowledge(fn, rule_id, "test-only probe function")
    return stacks


@pytest.fixture(scope="module")
def extended_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from selfheal_dev.local.assembly import synthesize

    out = tmp_path_factory.mktemp("extended") / "cdk.out"
    return synthesize(out, app="tests.integration.test_local_routing:build_extended_app")


@pytest.fixture(scope="module")
def runtime(extended_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.harness import RuntimeProcess

    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("state"),
        assembly=extended_assembly,
        extra_args=["--quiet", "--alarm-interval", "3600"],
    )
    rt.start()
    yield rt
    leftover = rt.stop()
    assert leftover == [], f"processes left after stop: {leftover}"


def put(rt: Any, detail_type: str, source: str = "com.example.tests", detail: dict[str, Any] | None = None) -> str:
    resp = rt.client("events").put_events(
        Entries=[
            {
                "EventBusName": "agentops-dev",
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail or {"probe": True}),
            }
        ]
    )
    assert resp["FailedEntryCount"] == 0
    return resp["Entries"][0]["EventId"]


def invocations_of(rt: Any, event_id: str, *, unrouted: bool = False) -> list[dict[str, Any]]:
    """The event's invocations; by default not those of the Unrouted rule (the probes' own
    detail-types are no route of the pipeline's, so that rule also takes them to the Manager)."""
    return [
        i
        for i in rt.control("invocations")["invocations"]
        if i["event_id"] == event_id and (unrouted or UNROUTED_RULE_ID not in (i.get("rule") or ""))
    ]


def test_a_producer_event_no_route_takes_reaches_the_manager_and_is_refused_with_the_reason(runtime: Any) -> None:
    # Given a report whose detail-type is spelled wrong: no route of the pipeline takes it
    detail = {"service": "checkout", "issue_type": "latency", "summary": "p95 4 s"}
    event_id = put(runtime, "issueReported", source="acme.checkout", detail=detail)
    assert runtime.idle(timeout=60)

    # Then the Unrouted rule delivered it to the Manager, once
    calls = invocations_of(runtime, event_id, unrouted=True)
    assert [c["function"] for c in calls] == ["selfheal-dev-manager"]
    assert UNROUTED_RULE_ID in calls[0]["rule"]
    # And the Manager refused it with a reason an operator lists (`selfheal rejected`)
    items = runtime.client("dynamodb").scan(
        TableName="agent-monitoring-dev",
        FilterExpression="event_id = :id",
        ExpressionAttributeValues={":id": {"S": event_id}},
    )["Items"]
    assert len(items) == 1
    assert "did you mean 'IssueReported'" in items[0]["reason"]["S"]


def test_a_rule_added_only_in_cdk_is_routed_to_its_target(runtime: Any) -> None:
    # Given the rule exists only in the CDK code of the test app
    rules = runtime.client("events").list_rules(EventBusName="agentops-dev")["Rules"]
    assert any("LocalProbeRule" in r["Name"] for r in rules)

    # When a matching event is put on the bus
    event_id = put(runtime, PROBE)
    assert runtime.idle(timeout=60)

    # Then the Manager received it through that rule, once, in EventBridge's shape
    calls = invocations_of(runtime, event_id)
    assert [c["function"] for c in calls] == ["selfheal-dev-manager"]
    assert "LocalProbeRule" in calls[0]["rule"]
    assert calls[0]["detail_type"] == PROBE


def test_the_pattern_is_applied(runtime: Any) -> None:
    # The probe rule requires a source with the prefix "com.example."
    event_id = put(runtime, PROBE, source="org.other.tests")
    assert runtime.idle(timeout=30)
    assert invocations_of(runtime, event_id) == []


def test_a_disabled_rule_does_not_deliver(runtime: Any) -> None:
    rules = runtime.client("events").list_rules(EventBusName="agentops-dev")["Rules"]
    disabled = [r for r in rules if "LocalDisabledRule" in r["Name"]]
    assert disabled and disabled[0]["State"] == "DISABLED"

    event_id = put(runtime, DISABLED_PROBE)
    assert runtime.idle(timeout=30)
    assert invocations_of(runtime, event_id) == []


def test_disabling_a_rule_at_run_time_stops_delivery(runtime: Any) -> None:
    events = runtime.client("events")
    name = next(
        r["Name"] for r in events.list_rules(EventBusName="agentops-dev")["Rules"] if "LocalProbeRule" in r["Name"]
    )
    events.disable_rule(Name=name, EventBusName="agentops-dev")
    try:
        event_id = put(runtime, PROBE)
        assert runtime.idle(timeout=30)
        assert invocations_of(runtime, event_id) == []
    finally:
        events.enable_rule(Name=name, EventBusName="agentops-dev")


def test_a_failing_target_is_retried_then_dead_lettered_with_the_error(runtime: Any) -> None:
    sqs = runtime.client("sqs")
    url = sqs.get_queue_url(QueueName="selfheal-dev-local-probe-dlq")["QueueUrl"]

    event_id = put(runtime, FAILING_PROBE)
    assert runtime.idle(timeout=60)

    # 1 attempt + RETRIES retries, every one a handler error
    calls = invocations_of(runtime, event_id)
    assert len(calls) == 1 + RETRIES
    assert all(not c["ok"] and c["error"]["errorType"] == "RuntimeError" for c in calls)
    assert sorted(c["attempt"] for c in calls) == list(range(RETRIES + 1))

    # then the event is in the rule target's DLQ with EventBridge's error attributes
    messages = []
    deadline = time.time() + 10
    while not messages and time.time() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1).get(
            "Messages", []
        )
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["id"] == event_id and body["detail-type"] == FAILING_PROBE
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["RETRY_ATTEMPTS"] == str(RETRIES)
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert f"probe failure for {event_id}" in attributes["ERROR_MESSAGE"]
    assert "LocalFailingRule" in attributes["RULE_ARN"]


def test_platform_metrics_follow_the_invocations(runtime: Any) -> None:
    cw = runtime.client("cloudwatch")
    from datetime import datetime, timedelta

    end = datetime.now(UTC) + timedelta(minutes=1)
    resp = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [{"Name": "FunctionName", "Value": "selfheal-dev-manager"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            },
            {
                "Id": "invocations",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Invocations",
                        "Dimensions": [{"Name": "FunctionName", "Value": "selfheal-dev-manager"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            },
            {"Id": "rate", "Expression": "errors / invocations * 100", "Label": "error rate"},
        ],
        StartTime=end - timedelta(hours=1),
        EndTime=end,
    )
    results = {r["Id"]: r for r in resp["MetricDataResults"]}
    assert sum(results["invocations"]["Values"]) >= 1
    assert all(0 <= v <= 100 for v in results["rate"]["Values"])


def test_request_response_invoke_returns_the_result_and_isolates_tenants(runtime: Any) -> None:
    # Given a function with tenant isolation (PER_TENANT) and one without
    lam = runtime.client("lambda")

    def invoke(n: int, tenant: str | None) -> dict[str, Any]:
        kwargs = {"TenantId": tenant} if tenant else {}
        resp = lam.invoke(FunctionName="selfheal-dev-tenant-probe", Payload=json.dumps({"n": n}), **kwargs)
        assert "FunctionError" not in resp, resp["Payload"].read()
        return json.loads(resp["Payload"].read())

    # When the same tenant invokes twice, its environment is reused; another tenant never sees it
    first, again, other = invoke(1, "tenant-a"), invoke(2, "tenant-a"), invoke(3, "tenant-b")
    assert again["pid"] == first["pid"] and again["seen"] == [1, 2]
    assert other["pid"] != first["pid"] and other["seen"] == [3]
    # And a call without a tenant id is refused, as Lambda refuses it
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.invoke(FunctionName="selfheal-dev-tenant-probe", Payload=b"{}")


def test_request_response_invoke_reports_function_errors_without_retrying(runtime: Any) -> None:
    lam = runtime.client("lambda")
    failing = next(f for f in runtime.control("status")["functions"].values() if "LocalFailingProbe" in f["name"])
    before = runtime.control("invocations")["invocations"]
    resp = lam.invoke(FunctionName=failing["name"], Payload=json.dumps({"id": "sync-1"}))
    assert resp["FunctionError"] == "Unhandled"
    assert "probe failure for sync-1" in json.loads(resp["Payload"].read())["errorMessage"]
    after = runtime.control("invocations")["invocations"]
    assert (
        len([r for r in after if r["function"] == failing["name"]])
        == len([r for r in before if r["function"] == failing["name"]]) + 1
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
