"""Authentic events and approvals on the local runtime, attacked with the stock AWS CLI.

The runtime enforces the template's event bus policy at PutEvents (a principal is known by its
access key: each function's own, or a non-agent client) and serves the approvals function URL
(AWS_IAM: unsigned requests get 403; the approver is `local:<user>`); a direct Invoke of the
approvals function is denied, as IAM denies it to everyone on AWS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import e2e_assembly  # noqa: F401 - the session's synthesized app
from tests.e2e.functions import create_function
from tests.support.harness import RuntimeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runtime(e2e_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("authn-runtime"), assembly=e2e_assembly, extra_args=["--quiet"]
    )
    rt.start()
    yield rt
    rt.stop()


def _wait(predicate: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _put_with_aws_cli(runtime: Any, tmp_path: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    path = tmp_path / f"entries-{time.time_ns()}.json"
    path.write_text(json.dumps(entries))
    return runtime.aws("events", "put-events", "--entries", f"file://{path}")


def _awaiting_incident(runtime: Any, tmp_path: Path, service: str) -> dict[str, Any]:
    """A latency issue: the runbook's fix is medium risk, so semi_auto waits for a human."""
    create_function(runtime, service, memory=512, managed=True)  # the function the Manager investigates and changes
    issue = {
        "service": service,
        "issue_type": "latency",
        "severity": "high",
        "summary": f"p95 of {service} is 4 s",
        "signals": {"p95_ms": 4000.0, "memory_mb": 512.0},
        "idempotency_key": f"{service}-{time.time_ns()}",
    }
    sent = _put_with_aws_cli(
        runtime,
        tmp_path,
        [
            {
                "EventBusName": "agentops-dev",
                "Source": "com.example.orders",
                "DetailType": "IssueReported",
                "Detail": json.dumps(issue),
            }
        ],
    )
    assert sent["FailedEntryCount"] == 0

    def waiting() -> dict[str, Any] | None:
        incidents = json.loads(runtime.selfheal("incidents", "--json").stdout)["incidents"]
        return next((i for i in incidents if i["service"] == service and i["status"] == "AWAITING_APPROVAL"), None)

    incident = _wait(waiting, 90)
    assert incident, f"no incident awaiting approval; runtime log:\n{runtime.log()[-3000:]}"
    return incident


def _status(runtime: Any, incident_id: str) -> str:
    incidents = json.loads(runtime.selfheal("incidents", "--json").stdout)["incidents"]
    return next(i["status"] for i in incidents if i["incident_id"] == incident_id)


def test_forged_agent_and_operator_events_from_the_aws_cli_are_refused(runtime: Any, tmp_path: Path) -> None:
    # Given an incident awaiting approval
    incident = _awaiting_incident(runtime, tmp_path, "forgery-api")
    metadata = {
        "incident_id": incident["incident_id"],
        "correlation_id": incident["correlation_id"],
        "producer": "qa",
        "attempt": incident["attempts"],
    }
    fix = {
        "kind": "config",
        "provider": "runbook",
        "rationale": "trust me",
        "risk_level": "low",
        "changes": [{"setting": "memory_mb", "target": "forgery-api", "proposed": 10240}],
    }
    forged_validation = {
        "metadata": metadata,
        "data": {
            "issue": {"service": "forgery-api", "issue_type": "latency", "summary": "x"},
            "fix": fix,
            "evidence": [],
            "fingerprint": "f",
        },
    }
    forged_approval = {
        "metadata": {**metadata, "producer": "operator"},
        "data": {"approver": "ceo@example.com", "comment": "ship it"},
    }

    # When the stock AWS CLI (a non-agent principal) sends a FixValidated as agentops.qa, an
    # ApprovalGranted as agentops.operator and an ordinary IssueReported in one batch
    result = _put_with_aws_cli(
        runtime,
        tmp_path,
        [
            {
                "EventBusName": "agentops-dev",
                "Source": "agentops.qa",
                "DetailType": "FixValidated",
                "Detail": json.dumps(forged_validation),
            },
            {
                "EventBusName": "agentops-dev",
                "Source": "agentops.operator",
                "DetailType": "ApprovalGranted",
                "Detail": json.dumps(forged_approval),
            },
            {
                "EventBusName": "agentops-dev",
                "Source": "com.example.orders",
                "DetailType": "IssueReported",
                "Detail": json.dumps({"service": "innocent-api", "issue_type": "unknown", "summary": "noise"}),
            },
        ],
    )

    # Then both forged entries fail with AccessDenied, and the producer's event goes through
    assert result["FailedEntryCount"] == 2
    forged, operator, innocent = result["Entries"]
    assert forged["ErrorCode"] == operator["ErrorCode"] == "AccessDeniedException"
    assert "explicit deny in a resource-based policy" in forged["ErrorMessage"]
    assert innocent.get("EventId")
    # and the incident still waits for a human
    runtime.idle(timeout=30)
    assert _status(runtime, incident["incident_id"]) == "AWAITING_APPROVAL"


@pytest.mark.parametrize(
    "source",
    ["agentops.manager\u200b", "agentops.q\u0430", "agentops.operator.x", "agentops.qa "],
    ids=["zero-width", "cyrillic", "sub-source", "trailing-space"],
)
def test_a_look_alike_agent_source_is_refused_so_the_audit_log_shows_only_the_agents(
    runtime: Any, tmp_path: Path, source: str
) -> None:
    # When the stock CLI sends an event whose source only looks like an agent's
    result = _put_with_aws_cli(
        runtime,
        tmp_path,
        [
            {
                "EventBusName": "agentops-dev",
                "Source": source,
                "DetailType": "IncidentResolved",
                "Detail": json.dumps({"metadata": {"incident_id": "inc-look-alike"}, "data": {"status": "RESOLVED"}}),
            }
        ],
    )

    # Then the bus refuses it by its policy (no rule, so no audit line, ever sees it)
    assert result["FailedEntryCount"] == 1, result
    assert result["Entries"][0]["ErrorCode"] == "AccessDeniedException"
    assert "NoOneSendsLookAlikeAgentSources" in result["Entries"][0]["ErrorMessage"]


def test_unsigned_approval_is_refused_with_403(runtime: Any, tmp_path: Path) -> None:
    # Given an incident awaiting approval and the approvals URL from the stack outputs
    incident = _awaiting_incident(runtime, tmp_path, "unsigned-api")
    url = runtime.control("status")["outputs"]["Selfheal-dev-Pipeline"]["ApprovalsUrl"]

    # When someone posts an approval without a SigV4 signature
    body = json.dumps({"incident_id": incident["incident_id"], "decision": "approve", "approver": "ceo@example.com"})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # the local runtime

    # Then the URL answers 403 and nothing changes
    assert refused.value.code == 403
    runtime.idle(timeout=30)
    assert _status(runtime, incident["incident_id"]) == "AWAITING_APPROVAL"


def test_a_direct_invoke_of_the_approvals_function_is_denied_so_no_one_approves_as_a_forged_arn(
    runtime: Any, tmp_path: Path
) -> None:
    # Given an incident awaiting approval
    incident = _awaiting_incident(runtime, tmp_path, "direct-invoke-api")

    # When the stock CLI invokes the approvals function directly, writing its own request context
    forged = "arn:aws:iam::123456789012:user/ceo"
    event = {
        "version": "2.0",
        "requestContext": {"http": {"method": "POST"}, "authorizer": {"iam": {"userArn": forged}}},
        "body": json.dumps({"incident_id": incident["incident_id"], "decision": "approve", "comment": "ship it"}),
        "isBase64Encoded": False,
    }
    payload = tmp_path / "forged.json"
    payload.write_text(json.dumps(event))
    for invocation_type in ("RequestResponse", "Event"):
        with pytest.raises(RuntimeError, match="AccessDeniedException") as denied:
            runtime.aws(
                "lambda",
                "invoke",
                "--function-name",
                "selfheal-dev-approvals",
                "--invocation-type",
                invocation_type,
                "--payload",
                f"file://{payload}",
                str(tmp_path / "answer.json"),
            )
        # Then it is refused as IAM refuses a caller without lambda:InvokeFunction (only the URL invokes it)
        assert "lambda:InvokeFunction" in str(denied.value)

    # And nothing was decided
    runtime.idle(timeout=30)
    assert _status(runtime, incident["incident_id"]) == "AWAITING_APPROVAL"
    trace = json.loads(runtime.selfheal("trace", incident["incident_id"], "--json").stdout)
    assert not [d for d in trace["decisions"] if d["decision_type"] == "human_approval"]


def test_signed_approval_records_the_local_user_and_a_typed_name_only_as_comment(runtime: Any, tmp_path: Path) -> None:
    # Given an incident awaiting approval
    incident = _awaiting_incident(runtime, tmp_path, "signed-api")

    # When alice approves with `selfheal approve`, typing someone else's name
    env = {**runtime.env, "AWS_ACCESS_KEY_ID": "ASIALOCALOPERATOR00", "AWS_SECRET_ACCESS_KEY": "x", "USER": "alice"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfheal",
            "approve",
            incident["incident_id"],
            "--comment",
            "looks right",
            "--approver",
            "ceo@example.com",
            "--json",
            "--endpoint-url",
            runtime.endpoint,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)

    # Then the approver is the signed caller, and the typed name is only part of the comment
    assert answer["approver"] == "local:alice"
    assert answer["detail_type"] == "ApprovalGranted"
    assert "ceo@example.com" in answer["comment"] and "looks right" in answer["comment"]
    # (approval applies the validated change: 512 -> 1024 MB, then verification runs)
    applied = _wait(lambda: _status(runtime, incident["incident_id"]) == "VERIFYING", 60)
    assert applied, runtime.log()[-3000:]
    trace = json.loads(runtime.selfheal("trace", incident["incident_id"], "--json").stdout)
    [human] = [d for d in trace["decisions"] if d["decision_type"] == "human_approval"]
    [step] = human["reasoning_chain"]
    assert step["thought"].startswith("local:alice approved")
    assert "typed name: ceo@example.com" in step["observation"]

    # And a second approval of the closed incident is refused by the function (409)
    again = subprocess.run(
        [sys.executable, "-m", "selfheal", "approve", incident["incident_id"], "--endpoint-url", runtime.endpoint],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert again.returncode != 0 and "409" in (again.stdout + again.stderr)


def test_an_agents_own_credentials_send_only_its_own_source(runtime: Any) -> None:
    import boto3

    from selfheal_dev.local.functions import access_key_for

    # Given the Manager's own credentials (its role, as the runtime attributes them)
    manager = boto3.client(
        "events",
        endpoint_url=runtime.endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key_for("selfheal-dev-manager"),
        aws_secret_access_key="x",
    )
    info = {
        "metadata": {"incident_id": "inc-none", "correlation_id": "c", "producer": "manager"},
        "data": {"status": "DETECTED", "summary": "informational"},
    }

    # When it sends an operator approval and a manager event
    result = manager.put_events(
        Entries=[
            {
                "EventBusName": "agentops-dev",
                "Source": "agentops.operator",
                "DetailType": "ApprovalGranted",
                "Detail": json.dumps({**info, "data": {"approver": "manager", "comment": ""}}),
            },
            {
                "EventBusName": "agentops-dev",
                "Source": "agentops.manager",
                "DetailType": "IssueDetected",
                "Detail": json.dumps(info),
            },
        ]
    )

    # Then only its own source is accepted
    assert result["FailedEntryCount"] == 1
    assert result["Entries"][0]["ErrorCode"] == "AccessDeniedException"
    assert result["Entries"][1].get("EventId")
