"""A Lambda retry finishes the step the first try left undone; it never answers "stale" for it.

Each test kills an agent right after its first status write or its publish, then delivers the
same event again, as Lambda's asynchronous retry does.
"""

from __future__ import annotations

import json

import pytest

from selfheal_core.bus import EventPublisher
from selfheal_core.events import ApprovalV1, Metadata
from tests.support.context import FakeLambdaContext
from tests.support.faults import Killed, die_after_publishing, expire_in_progress, latency_issue
from tests.support.pipeline import Pipeline, throttling_runbook_asking

SENT: list[tuple[str, str]] = []  # (incident id, detail-type) of every event really published


def kill_once(monkeypatch, source: str, detail_type: str, *, after_publish: bool) -> list[str]:
    original = EventPublisher.publish
    killed: list[str] = []
    SENT.clear()

    def publish(self, *messages):
        hit = self.source == source and any(m.detail_type == detail_type for m in messages) and not killed
        if hit and not after_publish:
            killed.append(detail_type)
            raise Killed(f"killed before publishing {detail_type}")
        original(self, *messages)
        SENT.extend((m.metadata.incident_id, m.detail_type) for m in messages)
        if hit:
            killed.append(detail_type)
            raise Killed(f"killed after publishing {detail_type}")

    monkeypatch.setattr(EventPublisher, "publish", publish)
    return killed


def test_qa_retry_after_publishing_does_not_race_the_manager(aws, monkeypatch):
    # Given QA dies right after publishing FixValidated
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"orders-api": {"timeout": 3}})
    killed = kill_once(monkeypatch, "agentops.qa", "FixValidated", after_publish=True)
    pipeline.put("IssueReported", latency_issue())
    first = pipeline.run()
    [crashed] = [d for d in first if d.error]
    assert killed == ["FixValidated"] and crashed.agent == "qa"
    [incident] = pipeline.incidents()
    # When Lambda retries QA (the Manager has already handled the first FixValidated)
    retried = pipeline.invoke("qa", crashed.event)
    pipeline.run()
    # Then the retry did not move the incident back to VALIDATING or validate again
    assert retried.error is None
    [after] = pipeline.incidents()
    history = [h["status"] for h in after.status_history]
    assert "VALIDATING" not in history[history.index("VALIDATED") :], history
    assert after.status == "AWAITING_APPROVAL"
    validations = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "validate_fix"]
    assert len(validations) == 1


def test_a_retry_after_awaiting_approval_was_written_still_asks_for_approval(aws, monkeypatch):
    # Given the Manager dies before it publishes ApprovalRequested
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"orders-api": {"timeout": 3}})
    kill_once(monkeypatch, "agentops.manager", "ApprovalRequested", after_publish=False)
    pipeline.put("IssueReported", latency_issue())
    [crashed] = [d for d in pipeline.run() if d.error]
    assert pipeline.incidents()[0].status == "AWAITING_APPROVAL"
    assert not [s for s in SENT if s[1] == "ApprovalRequested"]
    # When Lambda retries the FixValidated delivery
    assert pipeline.invoke("manager", crashed.event).error is None
    # Then the approval request goes out, and the close decision is written once
    [incident] = pipeline.incidents()
    assert (incident.incident_id, "ApprovalRequested") in SENT
    closes = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "close_incident"]
    assert len(closes) == 1


def test_a_retry_after_failed_was_written_still_escalates(aws, monkeypatch):
    # Given a fix QA always rejects, and the Manager dying before it sends the escalation
    throttling_runbook_asking(monkeypatch, 100)
    pipeline = Pipeline(parameters={"max-fix-attempts": "1"}, functions={"orders-api": {"reserved": 1}})
    kill_once(monkeypatch, "agentops.manager", "IncidentEscalated", after_publish=False)
    pipeline.put(
        "IssueReported",
        {
            "service": "orders-api",
            "issue_type": "throttling",
            "summary": "throttled",
            "signals": {"reserved_concurrency": 1.0},
        },
    )
    [crashed] = [d for d in pipeline.run() if d.error]
    assert pipeline.incidents()[0].status == "FAILED" and not [s for s in SENT if s[1] == "IncidentEscalated"]
    # When Lambda retries RemediationFailed
    assert pipeline.invoke("manager", crashed.event).error is None
    # Then the escalation goes out and the failure is recorded once
    [incident] = pipeline.incidents()
    assert (incident.incident_id, "IncidentEscalated") in SENT
    fails = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "fail_incident"]
    assert len(fails) == 1


def _deny(pipeline: Pipeline, incident, approver: str) -> None:
    metadata = {
        "incident_id": incident.incident_id,
        "correlation_id": incident.correlation_id,
        "producer": "approvals",
        "attempt": incident.attempts,
    }
    data = {"approver": approver, "comment": "not this"}
    pipeline.put("ApprovalDenied", {"metadata": metadata, "data": data}, source="agentops.operator")


def test_a_retry_after_a_denial_was_written_still_escalates(aws, monkeypatch):
    # Given the Manager dies after writing ESCALATED for a human denial, before IncidentEscalated
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [waiting] = pipeline.incidents()
    assert waiting.status == "AWAITING_APPROVAL"
    kill_once(monkeypatch, "agentops.manager", "IncidentEscalated", after_publish=False)
    _deny(pipeline, waiting, "arn:aws:iam::123456789012:user/bob")
    [crashed] = [d for d in pipeline.run() if d.error]
    assert pipeline.incidents()[0].status == "ESCALATED" and not [s for s in SENT if s[1] == "IncidentEscalated"]
    # When Lambda retries the ApprovalDenied delivery
    retried = pipeline.invoke("manager", crashed.event)
    # Then the escalation goes out and the denial is recorded once
    assert retried.error is None and retried.result["action"] == "escalated"
    assert (waiting.incident_id, "IncidentEscalated") in SENT
    decisions = [d for d in pipeline.decisions(waiting.incident_id) if d["decision_type"] == "human_approval"]
    assert len(decisions) == 1 and "bob denied" in json.dumps(decisions[0], default=str)
    # And another operator's denial of the same attempt tells nobody again (past idempotency's
    # window too: only the denial that wrote ESCALATED finishes it)
    from lambdas.manager import handler as manager_handler  # reads the test environment on import
    from lambdas.manager import logic

    SENT.clear()
    carol = ApprovalV1(approver="arn:aws:iam::123456789012:user/carol", comment="me neither")
    metadata = Metadata(incident_id=waiting.incident_id, correlation_id="c", attempt=waiting.attempts, producer="a")
    ports = manager_handler.ports(FakeLambdaContext(function_name="selfheal-test-manager"))
    assert logic.handle_approval(metadata, carol, False, ports)["action"] == "stale" and not SENT


@pytest.mark.parametrize(
    "source, published, decision",
    [
        ("agentops.manager", "RemediationRequested", "investigate"),
        ("agentops.engineer", "FixProposed", "propose_fix"),
        ("agentops.qa", "FixValidated", "validate_fix"),
    ],
)
def test_a_retry_the_next_agents_overtook_still_records_the_dead_steps_decision(
    aws, monkeypatch, source, published, decision
):
    # Given a step that dies right after its status write and its publish, before it settles
    # (its decision, held until then, dies with it)
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"orders-api": {"timeout": 3}})
    died = die_after_publishing(monkeypatch, source, published)
    pipeline.put("IssueReported", latency_issue())
    [crashed] = [d for d in pipeline.run() if d.error]
    [incident] = pipeline.incidents()
    assert died == [published] and incident.status == "AWAITING_APPROVAL"  # the next agents went on
    assert not [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == decision]

    # When Lambda's retry of that delivery comes after them (twice: a retry, then a late duplicate)
    expire_in_progress(pipeline)
    retried = pipeline.invoke(crashed.agent, crashed.event)
    expire_in_progress(pipeline)
    again = pipeline.invoke(crashed.agent, crashed.event)

    # Then it moves nothing back and sends nothing again, but the step's decision is recorded, once
    assert retried.error is None and retried.result["action"] == "stale", retried.result
    assert again.error is None
    assert pipeline.run() == []
    assert pipeline.incidents()[0].status == "AWAITING_APPROVAL"
    assert len([d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == decision]) == 1
