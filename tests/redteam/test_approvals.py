"""Red-team: human approvals (approvals function URL -> ApprovalGranted/Denied -> Manager)."""

from __future__ import annotations

from tests.integration.test_heal import approve
from tests.support.context import FakeLambdaContext
from tests.support.pipeline import Pipeline

FUNCTION = "orders-api"


def _awaiting(pipeline: Pipeline):
    pipeline.put(
        "IssueReported",
        {"service": FUNCTION, "issue_type": "latency", "severity": "high", "summary": "p95 4.2 s"},
    )
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == "AWAITING_APPROVAL", incident.last_reason
    return incident


def test_a_denial_racing_an_approval_does_not_escalate_a_change_already_applied(aws):
    """Expected: when an operator's `reject` and another operator's `approve` are handled
    concurrently (both Manager invocations read AWAITING_APPROVAL; the approval wins the write
    and applies the change), the denial is stale and the incident stays VERIFYING so the
    change is verified and rolled back if needed.

    Why it matters: handle_approval's ESCALATED write is conditioned only on "any open status"
    (ALLOWED_FROM[ESCALATED] = OPEN_STATUSES), not on AWAITING_APPROVAL. The late denial turns a
    VERIFYING incident whose change is live on the function into ESCALATED: the verify step
    then never runs, so a change nobody verified stays applied and is never rolled back."""
    from lambdas.manager import handler as manager_handler
    from lambdas.manager import logic
    from selfheal_core.events import ApprovalV1, Metadata

    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"memory": 512}})
    snapshot = _awaiting(pipeline)  # what the denial's invocation read

    approve(pipeline, snapshot)  # the approval's invocation wins: applied, verifying
    [applied] = pipeline.incidents()
    assert applied.status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 1024

    ports = manager_handler.ports(FakeLambdaContext(function_name="selfheal-test-manager"))
    ports.incidents.get = lambda _incident_id: snapshot  # the read happened before the approval's write
    logic.handle_approval(
        Metadata(
            incident_id=snapshot.incident_id,
            correlation_id=snapshot.correlation_id,
            attempt=snapshot.attempts,
            producer="approvals",
        ),
        ApprovalV1(approver="arn:aws:iam::123456789012:user/bob", comment="no"),
        False,
        ports,
    )

    [after] = pipeline.incidents()
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 1024  # the change is live
    # The verify deadline passes: nothing verifies or rolls back an ESCALATED incident.
    pipeline.fire_due("verify")
    [final] = pipeline.incidents()
    assert after.status == "VERIFYING", (
        f"a stale denial moved a live change to {after.status} ({after.last_reason}); after the verify "
        f"deadline: {final.status}, memory {pipeline.function_config(FUNCTION)['memory_mb']} MB"
    )


def _signed(body: str) -> dict:
    context = {"http": {"method": "POST"}, "authorizer": {"iam": {"userArn": "arn:aws:iam::123456789012:user/eve"}}}
    return {"version": "2.0", "requestContext": context, "body": body, "isBase64Encoded": False}


def test_malformed_approval_bodies_get_400_not_a_function_error():
    """Expected: an authenticated caller sending `{"decision": ["approve"]}` (a JSON list where a
    string is expected) or a body nested 4,000 levels deep (under the 8 KB cap) gets a 400 with
    a reason, like every other malformed body.

    Why it matters: lambdas/approvals/logic.py tests `decision not in DECISIONS` on an unhashable
    value (TypeError) and json.loads raises RecursionError on deep nesting; neither is a
    ValueError, so the function raises, the function URL answers 502, the error metric counts
    it as a Selfheal fault and `selfheal approve` shows a raw gateway error."""
    from lambdas.approvals import logic

    class NoIncident:
        def get(self, _incident_id):
            return None

    ports = logic.ApprovalPorts(incidents=NoIncident(), publisher=NoIncident())
    bodies = {
        "list-decision": '{"incident_id": "inc-1", "decision": ["approve"]}',
        "dict-decision": '{"incident_id": "inc-1", "decision": {"approve": 1}}',
        "deep-nesting": '{"incident_id": "inc-1", "x": ' + "[" * 4000 + "]" * 4000 + "}",
    }
    outcomes = {}
    for name, body in bodies.items():
        try:
            outcomes[name] = logic.handle_request(_signed(body), ports)["statusCode"]
        except Exception as exc:  # noqa: BLE001 - the defect: the function raises
            outcomes[name] = type(exc).__name__
    assert outcomes == dict.fromkeys(bodies, 400)


def test_a_retry_after_a_denial_was_written_still_escalates(aws, monkeypatch):
    """Expected: when the Manager dies after writing ESCALATED for a human denial but before
    IncidentEscalated is published, Lambda's retry of the same ApprovalDenied delivery sends the
    escalation (as RemediationFailed and FixValidated retries finish their step).

    Why it matters: handle_approval answers "stale" to anything not AWAITING_APPROVAL, so the
    retry finds ESCALATED and stops: the people on the alerts topic are never told that the fix
    was denied and the incident needs a person (lambdas/manager/logic.py handle_approval has no
    "retry after the status write" branch for a denial)."""
    from tests.integration.test_redo_steps import SENT, kill_once

    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"memory": 512}})
    incident = _awaiting(pipeline)
    kill_once(monkeypatch, "agentops.manager", "IncidentEscalated", after_publish=False)
    pipeline.put(
        "ApprovalDenied",
        {
            "metadata": {
                "incident_id": incident.incident_id,
                "correlation_id": incident.correlation_id,
                "producer": "approvals",
                "attempt": incident.attempts,
            },
            "data": {"approver": "arn:aws:iam::123456789012:user/bob", "comment": "not this"},
        },
        source="agentops.operator",
    )
    [crashed] = [d for d in pipeline.run() if d.error]
    [denied] = pipeline.incidents()
    assert denied.status == "ESCALATED" and not [s for s in SENT if s[1] == "IncidentEscalated"]

    retried = pipeline.invoke("manager", crashed.event)

    assert retried.error is None
    assert (incident.incident_id, "IncidentEscalated") in SENT, f"retry answered {retried.result}; nobody was told"
