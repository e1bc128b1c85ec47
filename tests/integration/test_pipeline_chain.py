"""The whole Manager -> Engineer -> QA -> Manager chain under moto, with the real handlers."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from tests.conftest import load_event
from tests.integration.test_heal import alarm_in_state
from tests.support.pipeline import Pipeline, throttling_runbook_asking

# The functions the incidents concern, as the investigation will read them.
FUNCTIONS = {"orders-api": {"memory": 512, "timeout": 3}, "payments-api": {"timeout": 3}}


def pipeline_with(**kw):
    return Pipeline(functions=FUNCTIONS, **kw)


def latency_issue(service="orders-api", **signals):
    return {
        "service": service,
        "issue_type": "latency",
        "severity": "high",
        "summary": f"p95 latency of {service} is 4.2 s",
        "signals": {"p95_ms": 4200.0, "memory_mb": 512.0, **signals},
    }


def agents_of(deliveries):
    return [d.agent for d in deliveries]


def test_issue_reported_runs_the_whole_chain_and_records_every_decision(aws):
    # Given a pipeline on full automation and the function orders-api (512 MB)
    pipeline = pipeline_with(parameters={"automation-level": "full_auto"})

    # When an external producer reports a latency issue
    pipeline.put("IssueReported", latency_issue())
    deliveries = pipeline.run()

    # Then Manager -> Engineer -> QA -> Manager ran once each and the change is applied and verifying
    assert agents_of(deliveries) == ["manager", "engineer", "qa", "manager"]
    assert all(d.error is None for d in deliveries), [d.error for d in deliveries]
    [incident] = pipeline.incidents()
    assert incident.status == "VERIFYING" and incident.attempts == 1
    assert pipeline.function_config("orders-api")["memory_mb"] == 1024

    # And when the verify window ends with traffic (in a minute that began after the change) and the
    # metric under its threshold, the incident is resolved
    applied_at = datetime.fromisoformat(incident.change["applied_at"])
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "FunctionName", "Value": "orders-api"}],
                "Timestamp": applied_at + timedelta(seconds=90),
                "Value": 40.0,
            }
        ],
    )
    pipeline.fire_due("verify")
    [incident] = pipeline.incidents()
    assert incident.status == "RESOLVED"
    decisions = pipeline.decisions(incident.incident_id)
    by_agent = {d["agent"] for d in decisions}
    assert by_agent == {"manager", "engineer", "qa"}
    assert {d["correlation_id"] for d in decisions} == {incident.correlation_id}
    for decision in decisions:
        assert decision["reasoning_chain"] and set(decision["reasoning_chain"][0]) == {
            "thought",
            "action",
            "observation",
        }
        assert 0 <= float(decision["confidence_score"]) <= 1
    assert {d["decision_type"] for d in decisions} >= {
        "triage",
        "investigate",
        "propose_fix",
        "validate_fix",
        "close_incident",
        "apply",
        "verify",
    }


def test_real_shaped_alarm_opens_an_incident_and_recovery_resolves_it(aws):
    pipeline = pipeline_with(parameters={"automation-level": "manual"})
    alarm = load_event("alarm_state_change")

    pipeline.put_raw_event(alarm)
    deliveries = pipeline.run()

    assert agents_of(deliveries) == ["manager", "engineer", "qa", "manager"]
    [incident] = pipeline.incidents()
    assert incident.status == "AWAITING_APPROVAL"
    assert incident.issue_type == "high_error_rate" and incident.service == "orders-api"

    # The same alarm returning to OK (DescribeAlarms confirms it) resolves its incident.
    alarm_in_state("OK", 0.0)
    recovered = copy.deepcopy(alarm)
    recovered["detail"]["previousState"], recovered["detail"]["state"] = (
        alarm["detail"]["state"],
        {"value": "OK", "reason": "Threshold no longer crossed", "timestamp": "2025-11-20T17:20:00.000+0000"},
    )
    pipeline.put_raw_event(recovered)
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == "RESOLVED"


def cloudwatch_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def test_an_alarm_delivered_after_its_own_ok_opens_nothing(aws):
    """An ALARM retried or delayed past the OK that followed it (which found no incident to
    resolve) must not open an incident: the function has recovered, a change would be unneeded."""
    pipeline = pipeline_with()
    # Given the alarm went OK after it entered ALARM
    alarm_in_state("OK", 0.0)
    late = copy.deepcopy(load_event("alarm_state_change"))
    late["detail"]["state"]["timestamp"] = cloudwatch_time(datetime.now(UTC) - timedelta(minutes=3))

    # When the ALARM event arrives now
    pipeline.put_raw_event(late)
    [delivery] = pipeline.run()

    # Then nothing is opened, and the reason says why
    assert pipeline.incidents() == []
    assert delivery.result["action"] == "ignored" and "late ALARM" in delivery.result["reason"]


@pytest.mark.parametrize("state_now", ["ALARM", "OK", "MISSING"])
def test_an_alarm_newer_than_its_state_or_not_readable_opens_an_incident(aws, state_now):
    pipeline = pipeline_with(parameters={"automation-level": "manual"})
    if state_now != "MISSING":
        alarm_in_state(state_now, 37.0)
    fresh = copy.deepcopy(load_event("alarm_state_change"))
    # stamped after the alarm's last state change (OK: this ALARM is what came after it)
    fresh["detail"]["state"]["timestamp"] = cloudwatch_time(datetime.now(UTC) + timedelta(seconds=5))

    pipeline.put_raw_event(fresh)
    pipeline.run()

    [incident] = pipeline.incidents()
    assert incident.status == "AWAITING_APPROVAL"


def test_metric_math_alarm_is_parsed_at_the_edge(aws):
    pipeline = pipeline_with()

    pipeline.put_raw_event(load_event("alarm_state_change_metric_math"))
    pipeline.run()

    [incident] = pipeline.incidents()
    assert incident.issue_type != "unknown"
    assert incident.status in {"VERIFYING", "AWAITING_APPROVAL"}
    assert incident.investigation["target"] == "payments-api"


def test_duplicate_alarms_fold_into_one_incident_and_one_engineer_call(aws):
    pipeline = pipeline_with(parameters={"automation-level": "manual"})
    alarm = load_event("alarm_state_change")

    for _ in range(40):
        pipeline.put_raw_event(alarm)
    deliveries = pipeline.run()

    [incident] = pipeline.incidents()
    assert incident.duplicates == 39
    assert agents_of(deliveries).count("engineer") == 1
    assert agents_of(deliveries).count("qa") == 1
    folds = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "fold_duplicate"]
    assert len(folds) == 39


def test_replayed_events_never_run_a_step_twice(aws):
    pipeline = pipeline_with(parameters={"automation-level": "manual"})
    pipeline.put("IssueReported", latency_issue())
    first = pipeline.run()
    [incident] = pipeline.incidents()
    decisions_before = len(pipeline.decisions(incident.incident_id))

    # Every event of the run delivered again: same ids (replay) ...
    replayed = [pipeline.invoke(d.agent, d.event) for d in first]
    # ... and as new deliveries with fresh ids (an at-least-once duplicate).
    duplicated = [pipeline.invoke(d.agent, {**d.event, "id": str(uuid.uuid4())}) for d in first[1:]]

    assert all(d.error is None for d in replayed + duplicated)
    assert pipeline.run() == []  # nothing new was emitted
    [after] = pipeline.incidents()
    assert after.status == incident.status == "AWAITING_APPROVAL"
    assert after.attempts == 1
    assert len(pipeline.decisions(incident.incident_id)) == decisions_before


def test_malformed_events_are_rejected_visibly_and_valid_work_carries_on(aws):
    from selfheal_core.rejections import RejectionLog

    pipeline = pipeline_with()
    pipeline.put_raw_event(load_event("malformed"))
    pipeline.put("IssueReported", latency_issue())
    pipeline.put(
        "FixProposed",
        {
            "metadata": {"incident_id": "inc-x", "correlation_id": "c", "producer": "engineer", "event_version": "7"},
            "data": {},
        },
        source="agentops.engineer",
    )
    deliveries = pipeline.run()

    assert all(d.error is None for d in deliveries)
    rejected = RejectionLog(pipeline.env["MONITORING_TABLE_NAME"]).list(days=1)
    reasons = " | ".join(r["reason"] for r in rejected)
    assert len(rejected) == 2
    assert "issue_type" in reasons and "unsupported event_version '7'" in reasons
    assert {r["agent"] for r in rejected} == {"manager", "qa"}
    [incident] = pipeline.incidents()
    assert incident.status == "VERIFYING"


def test_rejected_fix_loops_back_with_feedback_until_qa_accepts(aws, monkeypatch):
    # Reserved concurrency 1 (as read), and a runbook asking x10: its first proposals (10, then 6)
    # are steps QA's blast-radius policy refuses; the third (4) is the x4 it allows.
    throttling_runbook_asking(monkeypatch, 10)
    pipeline = Pipeline(parameters={"max-fix-attempts": "3"}, functions={"orders-api": {"reserved": 1}})
    pipeline.put("IssueReported", {"service": "orders-api", "issue_type": "throttling", "summary": "throttled"})
    deliveries = pipeline.run()

    assert agents_of(deliveries) == ["manager", "engineer", "qa", "engineer", "qa", "engineer", "qa", "manager"]
    [incident] = pipeline.incidents()
    assert incident.status == "VERIFYING" and incident.attempts == 3
    assert pipeline.function_config("orders-api")["reserved_concurrency"] == 4  # 1 -> 4: the x4 QA allows
    proposals = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "propose_fix"]
    assert [int(p["inputs"]["feedback_items"]) for p in sorted(proposals, key=lambda p: p["sk"])] == [0, 1, 2]


def test_fix_that_never_passes_ends_failed_after_max_attempts(aws, monkeypatch):
    throttling_runbook_asking(monkeypatch, 100)  # 1 -> 100, then 50: both refused
    pipeline = Pipeline(parameters={"max-fix-attempts": "2"}, functions={"orders-api": {"reserved": 1}})
    pipeline.put("IssueReported", {"service": "orders-api", "issue_type": "throttling", "summary": "throttled"})
    deliveries = pipeline.run()

    engineer_actions = [d.result["action"] for d in deliveries if d.agent == "engineer"]
    assert engineer_actions == ["proposed", "proposed", "gave_up"]
    [incident] = pipeline.incidents()
    assert incident.status == "FAILED" and incident.attempts == 2
    assert "max_attempts" in incident.last_reason


@pytest.mark.parametrize("granted, final", [(True, "VERIFYING"), (False, "ESCALATED")])
def test_manual_approval_applies_or_closes_the_incident(aws, granted, final):
    pipeline = pipeline_with(parameters={"automation-level": "manual"})
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == "AWAITING_APPROVAL"

    pipeline.put(
        "ApprovalGranted" if granted else "ApprovalDenied",
        {
            "metadata": {
                "incident_id": incident.incident_id,
                "correlation_id": incident.correlation_id,
                "producer": "operator",
                "attempt": incident.attempts,
            },
            "data": {"approver": "alice@example.com", "comment": "looks right" if granted else "not during the sale"},
        },
        source="agentops.operator",
    )
    pipeline.run()

    [closed] = pipeline.incidents()
    assert closed.status == final
    assert pipeline.function_config("orders-api")["memory_mb"] == (1024 if granted else 512)


def test_code_issue_offline_fails_honestly_and_qa_evidence_is_stored(aws):
    pipeline = pipeline_with()
    pipeline.put_raw_event(load_event("issue_reported"))  # a real bug; the runbook cannot write code
    deliveries = pipeline.run()

    assert agents_of(deliveries) == ["manager", "engineer", "manager"]
    [incident] = pipeline.incidents()
    assert incident.status == "FAILED" and "unsupported" in incident.last_reason

    # A config issue's QA evidence lands in the artifacts store (claim check).
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    keys = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket=pipeline.env["ARTIFACTS_BUCKET"]).get("Contents", [])
    ]
    assert any(k.endswith("qa-evidence-1.json") for k in keys)


def test_alarms_arriving_after_the_fix_still_fold_until_the_alarm_recovers(aws):
    pipeline = pipeline_with(parameters={"automation-level": "full_auto"})
    alarm = load_event("alarm_state_change")
    pipeline.put_raw_event(alarm)
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == "VERIFYING"

    for _ in range(20):  # the tail of the storm, after the pipeline already closed the incident
        pipeline.put_raw_event(alarm)
    late = pipeline.run()

    assert [d.agent for d in late] == ["manager"] * 20
    [still_one] = pipeline.incidents()
    assert still_one.incident_id == incident.incident_id and still_one.duplicates == 20


@pytest.mark.parametrize("failing_agent", ["manager", "engineer", "qa"])
def test_a_retry_after_a_failed_publish_finishes_the_step(aws, monkeypatch, failing_agent):
    """Status written, then PutEvents fails: Lambda retries the event and the step must complete."""
    from selfheal_core.bus import EventPublisher, PublishError

    pipeline = pipeline_with(parameters={"automation-level": "full_auto"})
    original = EventPublisher.publish
    failed = []

    def flaky(self, *messages):
        if self.source == f"agentops.{failing_agent}" and not failed:
            failed.append(messages[0].detail_type)
            raise PublishError("PutEvents throttled")
        return original(self, *messages)

    monkeypatch.setattr(EventPublisher, "publish", flaky)
    pipeline.put("IssueReported", latency_issue())
    first = pipeline.run()
    [broken] = [d for d in first if d.error]

    retried = pipeline.invoke(broken.agent, broken.event)  # the Lambda async retry of the same event
    pipeline.run()

    assert failed and retried.error is None, retried.error
    [incident] = pipeline.incidents()
    assert incident.status == "VERIFYING" and incident.attempts == 1 and incident.duplicates == 0
    assert pipeline.function_config("orders-api")["memory_mb"] == 1024  # applied once: 512 -> 1024, not 2048


def test_an_answer_stored_first_by_another_delivery_is_the_one_that_goes_on(aws, monkeypatch):
    # Given the Engineer's provider answers while another delivery of the same step stores its own
    # answer first (a re-drive racing the original)
    from lambdas.engineer.proposals import ProposalStore
    from lambdas.engineer.providers.runbook import RunbookProvider

    pipeline = pipeline_with(parameters={"automation-level": "full_auto"})
    original = RunbookProvider.propose

    def answered_twice(self, request):
        result = original(self, request)
        first = result.fix.model_copy(update={"rationale": "the answer stored first"})
        store = ProposalStore(pipeline.env["DECISIONS_TABLE_NAME"])
        store.put(request.incident_id, request.attempt, type(result)(fix=first, reasoning=[], confidence=0.7))
        return result

    monkeypatch.setattr(RunbookProvider, "propose", answered_twice)

    # When the pipeline runs
    pipeline.put("IssueReported", latency_issue())
    deliveries = pipeline.run()

    # Then this delivery's own answer was refused (first writer wins) and the stored one went on to QA
    assert agents_of(deliveries) == ["manager", "engineer", "qa", "manager"]
    assert all(d.error is None for d in deliveries), [d.error for d in deliveries]
    proposed = next(d for d in deliveries if d.agent == "qa").event["detail"]["data"]["fix"]
    assert proposed["rationale"] == "the answer stored first"
    [incident] = pipeline.incidents()
    assert incident.status == "VERIFYING"


def test_a_large_fix_is_claim_checked_under_its_hash_so_a_racing_delivery_never_replaces_the_stored_one(aws):
    # Given two deliveries of one Engineer step whose answers are different fixes, each too large for an event
    from lambdas.engineer.logic import _claim_checked
    from selfheal_core.artifacts import ArtifactStore
    from selfheal_core.events import Fix, Metadata

    pipeline = pipeline_with()
    artifacts = ArtifactStore(pipeline.env["ARTIFACTS_BUCKET"])
    metadata = Metadata(incident_id="inc-race", correlation_id="c-1", producer="engineer", attempt=1)

    def large_fix(body: str) -> Fix:
        return Fix(kind="code", provider="claude", rationale="r", risk_level="low", files={"app.py": body * 40_000})

    first, second = large_fix("a"), large_fix("b")

    # When both are claim-checked, the second after the first
    first_sent = _claim_checked(first, metadata, artifacts)
    first_body = artifacts.get_json(first_sent.artifact)
    second_sent = _claim_checked(second, metadata, artifacts)

    # Then each travels as a reference under its own key, the first object is untouched, and the
    # same fix sent again lands on the same key
    assert first_sent.files == {} and second_sent.files == {}
    assert first_sent.artifact.key != second_sent.artifact.key
    assert artifacts.get_json(first_sent.artifact) == first_body
    assert first_body["files"]["app.py"].startswith("a")
    assert _claim_checked(first, metadata, artifacts).artifact.key == first_sent.artifact.key


def test_an_answer_whose_transaction_keeps_failing_is_kept_and_the_retry_does_not_ask_again(aws, monkeypatch):
    # Given the Engineer's answer-and-status transaction fails (throttled past its own tries)
    from botocore.exceptions import ClientError

    from lambdas.engineer.providers.runbook import RunbookProvider
    from selfheal_core.incidents import IncidentStore

    pipeline = pipeline_with(parameters={"automation-level": "full_auto"})
    asked, failed = [], []
    original_propose, original_put = RunbookProvider.propose, IncidentStore.transition_and_put

    def counted(self, request):
        asked.append(request.attempt)
        return original_propose(self, request)

    def throttled_once(self, *args, **kwargs):
        if not failed:
            failed.append(args)
            raise ClientError({"Error": {"Code": "TransactionCanceledException"}}, "TransactWriteItems")
        return original_put(self, *args, **kwargs)

    monkeypatch.setattr(RunbookProvider, "propose", counted)
    monkeypatch.setattr(IncidentStore, "transition_and_put", throttled_once)
    pipeline.put("IssueReported", latency_issue())
    [broken] = [d for d in pipeline.run() if d.error]
    assert broken.agent == "engineer" and pipeline.incidents()[0].status == "REMEDIATING"

    # When Lambda retries the event
    retried = pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the stored answer moved the incident on: the model (here the runbook) was asked once
    assert retried.error is None, retried.error
    assert asked == [1]
    assert pipeline.incidents()[0].status == "VERIFYING"


def test_one_incident_costs_each_agent_few_aws_calls(aws, monkeypatch):
    # Given a pipeline on full automation, with every AWS call counted per agent
    from collections import Counter

    from botocore.client import BaseClient

    pipeline = pipeline_with(parameters={"automation-level": "full_auto"})
    calls: dict[str, Counter] = {}
    current = {"agent": "test"}
    original_call, original_invoke = BaseClient._make_api_call, Pipeline.invoke

    def counting(self, operation, params):
        calls.setdefault(current["agent"], Counter())[operation] += 1
        return original_call(self, operation, params)

    def invoking(self, agent, event):
        current["agent"] = agent
        try:
            return original_invoke(self, agent, event)
        finally:
            current["agent"] = "test"

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    monkeypatch.setattr(Pipeline, "invoke", invoking)

    # When one latency issue runs to the applied change
    pipeline.put("IssueReported", latency_issue())
    assert agents_of(pipeline.run()) == ["manager", "engineer", "qa", "manager"]
    assert pipeline.incidents()[0].status == "VERIFYING"

    # Then the Manager reads the function once (GetFunction; ListTags only right before the write),
    # sends each invocation's events in one PutEvents and keeps the validated fix without S3
    manager, engineer = calls["manager"], calls["engineer"]
    assert manager["GetFunction"] == 1 and manager["ListTags"] == 1
    assert manager["GetFunctionConfiguration"] == manager["GetFunctionConcurrency"] == 0
    assert manager["PutEvents"] == 2
    assert manager["PutObject"] == manager["GetObject"] == 0
    # And the incident and its step's record are one read for the Manager and the Engineer (the
    # Manager's one GetItem is the fingerprint lock, read to fold a duplicate before idempotency)
    assert manager["BatchGetItem"] == 1 and manager["GetItem"] == 1
    assert engineer["BatchGetItem"] == 1 and engineer["GetItem"] == 0
    # And each step's stored answer lands with its status: the Engineer's proposal with FIX_PROPOSED,
    # QA's verdict with VALIDATED, the validated fix and the planned change with APPROVED (the
    # Manager's three status writes are REMEDIATING, APPROVED and VERIFYING)
    qa = calls["qa"]
    assert engineer["UpdateItem"] == 0 and engineer["PutItem"] == 1  # the one PutItem: idempotency's claim
    assert qa["GetItem"] == 0 and qa["UpdateItem"] == 1 and qa["PutItem"] == 1
    assert manager["UpdateItem"] == 3
    assert engineer["TransactWriteItems"] == qa["TransactWriteItems"] == 2  # the answer's, then the settle
