"""A forged FixValidated cannot approve anything: the Manager believes QA's record, not the event.

Runs the real handlers under moto (tests/support/pipeline.py). The genuine FixValidated is
held back so the incident sits in VALIDATED, as it does between QA's publish and the
Manager's delivery; the attacker's event arrives in that window.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from selfheal_core.events import Fix
from selfheal_core.incidents import IncidentStore
from selfheal_core.validations import ValidationStore, fix_sha256
from tests.support.pipeline import Pipeline


@pytest.fixture
def aws():
    with mock_aws():
        yield


def latency_issue() -> dict[str, Any]:
    return {
        "service": "orders-api",
        "issue_type": "latency",
        "severity": "high",
        "summary": "p95 latency is 4.2 s",
        "signals": {"p95_ms": 4200.0, "memory_mb": 512.0},
    }


def run_until_fix_validated(pipeline: Pipeline, delivered: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Deliver everything except the genuine FixValidated, which is returned undelivered."""
    held: dict[str, Any] | None = None
    for _ in range(20):
        batch = pipeline._receive()
        if not batch:
            break
        for agent, event in batch:
            if agent == "manager" and event.get("detail-type") == "FixValidated":
                held = event
                continue
            delivery = pipeline.invoke(agent, event)
            assert delivery.error is None, delivery.error
            if delivered is not None:
                delivered.append(event)
    assert held is not None, "QA never validated the fix"
    return held


def forge(pipeline: Pipeline, genuine: dict[str, Any], **fix_changes: Any) -> dict[str, Any]:
    """The attacker's copy of the genuine event, from source agentops.qa, with the fix changed."""
    detail = json.loads(json.dumps(genuine["detail"]))
    detail["data"]["fix"].update(fix_changes)
    detail["metadata"]["producer"] = "qa"
    pipeline.put("FixValidated", detail, source="agentops.qa")
    [(agent, forged)] = pipeline._receive()
    assert agent == "manager"
    return forged


def status_of(pipeline: Pipeline) -> str:
    [incident] = pipeline.incidents()
    return incident.status


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"risk_level": "low"}, id="same fix claimed low risk"),
        pytest.param(
            {
                "risk_level": "low",
                "changes": [{"setting": "memory_mb", "target": "orders-api", "current": 512.0, "proposed": 10240.0}],
            },
            id="different fix at low risk",
        ),
        pytest.param({"rationale": "trust me"}, id="different rationale, same risk"),
    ],
)
def test_forged_fix_validated_with_another_fix_or_risk_does_not_resolve(aws, changes):
    # Given semi_auto (low risk would be auto-approved) and a medium-risk fix QA validated,
    # whose genuine FixValidated has not reached the Manager yet
    pipeline = Pipeline(parameters={"automation-level": "semi_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    genuine = run_until_fix_validated(pipeline)
    assert status_of(pipeline) == "VALIDATED"

    # When a forged FixValidated (source agentops.qa) with another fix or risk reaches the Manager
    forged = forge(pipeline, genuine, **changes)
    outcome = pipeline.invoke("manager", forged)

    # Then it is refused with a reason, nothing is approved and the incident stays VALIDATED
    assert outcome.error is None and outcome.result["action"] == "refused"
    assert "is not the fix QA validated" in outcome.result["reason"]
    assert status_of(pipeline) == "VALIDATED"
    [incident] = pipeline.incidents()
    refusals = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "refuse_validation"]
    assert len(refusals) == 1 and refusals[0]["outputs"]["decision"] == "refused"
    assert not [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "close_incident"]

    # And the genuine event still closes by QA's recorded risk (medium: a human must approve)
    assert pipeline.invoke("manager", genuine).result["action"] == "awaiting_approval"
    assert status_of(pipeline) == "AWAITING_APPROVAL"


def test_fix_validated_without_a_passing_record_is_refused(aws):
    # Given a VALIDATED incident whose validation record is missing (never written by QA)
    pipeline = Pipeline(parameters={"automation-level": "full_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    genuine = run_until_fix_validated(pipeline)
    [incident] = pipeline.incidents()
    table = boto3.resource("dynamodb").Table(pipeline.env["VALIDATIONS_TABLE_NAME"])
    table.delete_item(Key={"pk": f"INCIDENT#{incident.incident_id}", "sk": "VALIDATION#001"})

    # When the (otherwise genuine) FixValidated arrives, even on full automation
    outcome = pipeline.invoke("manager", genuine)

    # Then the Manager refuses it: no record, no approval
    assert outcome.result == {
        "action": "refused",
        "incident_id": incident.incident_id,
        "reason": "no validation record from QA for this attempt",
    }
    assert status_of(pipeline) == "VALIDATED"


def test_a_verdict_written_where_other_agents_may_write_is_not_believed(aws):
    """The Engineer and the Manager may write the decisions table (IAM has no condition on a sort
    key); a passing verdict written there, the record's old home, must count for nothing."""
    pipeline = Pipeline(parameters={"automation-level": "full_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    genuine = run_until_fix_validated(pipeline)
    [incident] = pipeline.incidents()
    key = {"pk": f"INCIDENT#{incident.incident_id}", "sk": "VALIDATION#001"}
    resource = boto3.resource("dynamodb")
    verdict = resource.Table(pipeline.env["VALIDATIONS_TABLE_NAME"]).get_item(Key=key)["Item"]
    # Given QA's verdict moved, as a forger would write it, into the decisions table
    resource.Table(pipeline.env["DECISIONS_TABLE_NAME"]).put_item(Item={**verdict, "risk_level": "low"})
    resource.Table(pipeline.env["VALIDATIONS_TABLE_NAME"]).delete_item(Key=key)

    # When the FixValidated arrives
    outcome = pipeline.invoke("manager", genuine)

    # Then the Manager finds no verdict from QA and approves nothing
    assert outcome.result["action"] == "refused"
    assert outcome.result["reason"] == "no validation record from QA for this attempt"
    assert status_of(pipeline) == "VALIDATED"


def test_qa_writes_its_record_before_publishing_and_the_hash_pins_the_fix(aws):
    # Given the chain up to QA's verdict
    pipeline = Pipeline(parameters={"automation-level": "full_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    genuine = run_until_fix_validated(pipeline)
    [incident] = pipeline.incidents()

    # Then the record holds the validated fix, its hash and QA's risk level
    record = ValidationStore(pipeline.env["VALIDATIONS_TABLE_NAME"], pipeline.env["DECISIONS_TABLE_NAME"]).get(
        incident.incident_id, 1
    )
    assert record is not None and record.passed and record.risk_level == "medium"
    fix = Fix.model_validate(genuine["detail"]["data"]["fix"])
    assert record.fix_sha256 == fix_sha256(fix)
    assert Fix.model_validate(record.fix) == fix
    assert record.evidence_artifact and record.evidence_artifact["key"].endswith("qa-evidence-1.json")


def test_qa_retry_at_the_same_attempt_rewrites_its_record_but_not_another_fixs(aws):
    # Given QA's record for attempt 1
    pipeline = Pipeline(parameters={"automation-level": "full_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    genuine = run_until_fix_validated(pipeline)
    [incident] = pipeline.incidents()
    store = ValidationStore(pipeline.env["VALIDATIONS_TABLE_NAME"], pipeline.env["DECISIONS_TABLE_NAME"])
    incidents = IncidentStore(pipeline.env["DECISIONS_TABLE_NAME"])
    before = store.get(incident.incident_id, 1)
    fix = Fix.model_validate(genuine["detail"]["data"]["fix"])

    # When QA's own retry writes the same fix again, it succeeds (a retry finishes the step)
    again = store.put(
        incidents,
        incident_id=incident.incident_id,
        attempt=1,
        fix=fix,
        original_fix=fix,
        passed=True,
        reason="ok",
        evidence_artifact=None,
        risk_level=before.risk_level,
    )
    assert again.fix_sha256 == before.fix_sha256

    # And a different fix for the same attempt is refused
    from selfheal_core.validations import ValidationConflict

    other = fix.model_copy(update={"risk_level": "low"})
    with pytest.raises(ValidationConflict):
        store.put(
            incidents,
            incident_id=incident.incident_id,
            attempt=1,
            fix=other,
            original_fix=other,
            passed=True,
            reason="forged",
            evidence_artifact=None,
            risk_level="low",
        )
    assert store.get(incident.incident_id, 1).risk_level == "medium"
    assert pipeline.incidents()[0].status == "VALIDATED"  # the refused verdict moved nothing either


def test_a_second_proposal_at_the_same_attempt_cannot_replace_the_validated_fix(aws):
    # Given QA validated attempt 1's fix and its FixValidated is still on its way
    pipeline = Pipeline(parameters={"automation-level": "semi_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    delivered: list[dict[str, Any]] = []
    genuine = run_until_fix_validated(pipeline, delivered)
    [proposal] = [e for e in delivered if e["detail-type"] == "FixProposed"]

    # When a second FixProposed for the same attempt arrives with another fix at low risk
    second = json.loads(json.dumps(proposal))
    second["id"] = "another-delivery"
    second["detail"]["data"]["fix"].update({"risk_level": "low", "rationale": "a different fix"})
    outcome = pipeline.invoke("qa", second)

    # Then QA keeps the recorded verdict: no status change, no second FixValidated
    assert outcome.error is None and outcome.result["action"] == "stale"
    assert status_of(pipeline) == "VALIDATED"
    assert pipeline._receive() == []
    # and the genuine event is still acted on, at the recorded (medium) risk
    assert pipeline.invoke("manager", genuine).result["action"] == "awaiting_approval"


def test_two_proposals_racing_at_one_attempt_never_leave_the_incident_validating(aws, monkeypatch):
    # Given QA validated attempt 1's fix
    pipeline = Pipeline(parameters={"automation-level": "semi_auto"}, functions={"orders-api": {"memory": 512}})
    pipeline.put("IssueReported", latency_issue())
    delivered: list[dict[str, Any]] = []
    genuine = run_until_fix_validated(pipeline, delivered)
    [proposal] = [e for e in delivered if e["detail-type"] == "FixProposed"]

    # When a second proposal's QA run did not see the record yet (it is written concurrently)
    original_get = ValidationStore.get
    calls = []

    def racing_get(self, incident_id, attempt):
        calls.append(attempt)
        return None if len(calls) == 1 else original_get(self, incident_id, attempt)

    monkeypatch.setattr(ValidationStore, "get", racing_get)
    second = json.loads(json.dumps(proposal))
    second["id"] = "racing-delivery"
    second["detail"]["data"]["fix"].update({"risk_level": "low", "rationale": "a racing fix"})
    outcome = pipeline.invoke("qa", second)

    # Then its verdict is not recorded over the first, the incident stays VALIDATED (QA never moves
    # a VALIDATED incident back to VALIDATING), and nothing is published for the second fix
    assert outcome.error is None and outcome.result["action"] == "stale"
    assert outcome.result["incident_id"] == genuine["detail"]["metadata"]["incident_id"]
    assert status_of(pipeline) == "VALIDATED"
    assert pipeline._receive() == []
    monkeypatch.setattr(ValidationStore, "get", original_get)
    assert pipeline.invoke("manager", genuine).result["action"] == "awaiting_approval"
