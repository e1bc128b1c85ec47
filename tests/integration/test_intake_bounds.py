"""Intake refuses what it cannot safely hold, with a recorded reason, and never crashes or drops.

Each test is a shape a producer (or an attacker with PutEvents) can really deliver.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from moto import mock_aws

from tests.conftest import load_event
from tests.support.pipeline import Pipeline


@pytest.fixture
def pipeline():
    with mock_aws():
        yield Pipeline(parameters={"automation-level": "full_auto"})


def issue(**overrides):
    return {
        "service": "orders-api",
        "issue_type": "latency",
        "severity": "high",
        "summary": "p95 is 4 s",
        "signals": {"p95_ms": 4000.0},
        **overrides,
    }


def rejections(pipeline):
    from selfheal_core.rejections import RejectionLog

    return RejectionLog(pipeline.env["MONITORING_TABLE_NAME"]).list(days=1)


def manager_event(detail, detail_type="IssueReported", source="acme.monitoring"):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-27T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity", "1e999", 1e126, -3e200, 1e-131, True, "1e3", " 5 "])
def test_non_finite_or_unstorable_numbers_are_refused_with_a_reason(pipeline, value):
    # Given a report whose signal pydantic would turn into NaN/inf or a number from text or a boolean, or DynamoDB cannot store
    delivery = pipeline.invoke("manager", manager_event(issue(signals={"p95_ms": value})))
    # Then the handler answers (no crash, no on-failure queue), refuses it with a reason, opens nothing
    assert delivery.error is None and delivery.result["action"] == "rejected"
    [rejected] = rejections(pipeline)
    assert "signals.p95_ms" in rejected["reason"]
    assert pipeline.incidents() == []


def test_deeply_nested_events_are_refused_before_anything_copies_them(pipeline):
    # Given an IssueReported with 500 levels of nesting (EventBridge accepts 1,000)
    nested: dict = {}
    cursor = nested
    for _ in range(500):
        cursor["a"] = {}
        cursor = cursor["a"]
    delivery = pipeline.invoke("manager", manager_event(issue(extra=nested)))
    assert delivery.error is None and delivery.result == {"action": "rejected", "reason": delivery.result["reason"]}
    assert "nested deeper" in delivery.result["reason"]
    [rejected] = rejections(pipeline)
    assert rejected["reason"] == "event is nested deeper than 32 levels"


def test_a_rejection_of_an_unserialisable_event_is_still_recorded(pipeline):
    from selfheal_core.rejections import RejectionLog

    nested: dict = {}
    cursor = nested
    for _ in range(5_000):  # deeper than json can serialise
        cursor["a"] = {}
        cursor = cursor["a"]
    RejectionLog(pipeline.env["MONITORING_TABLE_NAME"]).record(
        reason="too deep", event={"id": "x", "detail": nested}, agent="manager"
    )
    [rejected] = rejections(pipeline)
    assert "nested too deeply" in rejected["raw"] and rejected["event_id"] == "x"


def test_a_huge_field_name_is_refused_and_the_stored_answer_stays_small(pipeline):
    # Given a 200 KB non-ASCII field name
    delivery = pipeline.invoke("manager", manager_event(issue(**{"é" * 200_000: 1})))
    assert delivery.error is None
    assert len(json.dumps(delivery.result)) < 1_000
    assert len(rejections(pipeline)) == 1


def test_a_producer_cannot_point_at_an_artifact(pipeline):
    # Given a report that carries a claim check to another incident's code
    code = {
        "test_command": "python -m pytest -q",
        "artifact": {
            "bucket": pipeline.env["ARTIFACTS_BUCKET"],
            "key": "incidents/inc-other/code.json",
            "size_bytes": 10,
        },
    }
    delivery = pipeline.invoke("manager", manager_event(issue(issue_type="exception", code=code)))
    assert delivery.result["action"] == "rejected" and "code.artifact" in delivery.result["reason"]
    assert pipeline.incidents() == []


def test_two_reports_with_the_same_producer_incident_id_are_two_reports(pipeline):
    # Given two different envelope-form reports that both carry metadata.incident_id "1"
    def envelope(service):
        return {
            "metadata": {"incident_id": "1", "correlation_id": "c", "producer": "acme"},
            "data": issue(service=service),
        }

    first = pipeline.invoke("manager", manager_event(envelope("orders-api")))
    second = pipeline.invoke("manager", manager_event(envelope("billing-api")))
    # Then both open an incident: neither gets the other's cached answer
    assert first.result["action"] == second.result["action"] == "opened"
    assert {i.service for i in pipeline.incidents()} == {"orders-api", "billing-api"}


def test_the_same_idempotency_key_redelivered_is_answered_once(pipeline):
    event = manager_event(issue(idempotency_key="acme-42"))
    first = pipeline.invoke("manager", event)
    again = pipeline.invoke("manager", {**event, "id": str(uuid.uuid4())})
    assert first.result == again.result and len(pipeline.incidents()) == 1


def test_the_same_report_sent_again_under_its_key_is_answered_as_that_report_not_counted(pipeline):
    """A producer's retry is a new PutEvents: a new id and a new time. Under its key it is the
    same report, however long the first incident stays open."""
    event = manager_event(issue(idempotency_key="acme-44"))
    first = pipeline.invoke("manager", event)
    for n in range(2):
        again = pipeline.invoke("manager", {**event, "id": str(uuid.uuid4()), "time": f"2026-11-29T12:0{n}:00Z"})
        assert again.result == first.result
    [incident] = pipeline.incidents()
    assert incident.duplicates == 0


def test_a_key_reused_for_another_issue_is_refused_even_when_that_issue_is_open(pipeline):
    """The key check is not skipped because another report (no key, the same fingerprint: a report
    without `resource` is matched by its key) opened the second issue."""
    pipeline.invoke("manager", manager_event(issue(idempotency_key="acme-45")))
    pipeline.invoke("manager", manager_event(issue(service="billing-api", resource="acme-45")))

    reused = pipeline.invoke("manager", manager_event(issue(service="billing-api", idempotency_key="acme-45")))

    assert reused.result["action"] == "rejected", reused.result
    assert "idempotency_key already used for a different issue" in reused.result["reason"]
    assert all(i.duplicates == 0 for i in pipeline.incidents())


def test_a_key_reused_for_another_issue_is_refused_visibly_not_answered_with_the_first_outcome(pipeline):
    # Given a report opened under the producer's key
    first = pipeline.invoke("manager", manager_event(issue(idempotency_key="acme-43")))
    assert first.result["action"] == "opened"
    # When the producer sends another service's issue under the same key, in both detail shapes
    other = pipeline.invoke("manager", manager_event(issue(service="billing-api", idempotency_key="acme-43")))
    enveloped = pipeline.invoke(
        "manager",
        manager_event(
            {
                "metadata": {"incident_id": "acme-1", "correlation_id": "acme-1", "producer": "acme"},
                "data": issue(issue_type="throttling", idempotency_key="acme-43"),
            }
        ),
    )
    # (an attempt in the producer's envelope is ignored: it does not make the key a new one)
    with_attempt = pipeline.invoke(
        "manager",
        manager_event(
            {
                "metadata": {"event_version": "1", "attempt": 7},
                "data": issue(service="billing-api", idempotency_key="acme-43"),
            }
        ),
    )
    # Then each is refused with the reason, listed for operators; nothing else was opened
    for delivery in (other, enveloped, with_attempt):
        assert delivery.error is None and delivery.result["action"] == "rejected"
        assert "idempotency_key already used for a different issue" in delivery.result["reason"]
    assert len(rejections(pipeline)) == 3
    assert [i.service for i in pipeline.incidents()] == ["orders-api"]
    # And the same issue under the key, reworded, is still that report's incident
    again = pipeline.invoke("manager", manager_event(issue(summary="p95 is 5 s now", idempotency_key="acme-43")))
    assert again.result["incident_id"] == first.result["incident_id"] and len(pipeline.incidents()) == 1
    assert len(rejections(pipeline)) == 3


def test_an_unknown_alarm_state_is_recorded_as_a_rejection(pipeline):
    alarm = load_event("alarm_state_change")
    alarm["detail"]["state"]["value"] = "BROKEN"
    delivery = pipeline.invoke("manager", alarm)
    assert delivery.result["action"] == "rejected" and "unknown alarm state" in delivery.result["reason"]
    assert len(rejections(pipeline)) == 1


def test_an_alarm_whose_function_dimension_is_not_a_string_names_no_function(pipeline):
    alarm = copy.deepcopy(load_event("alarm_state_change"))
    for metric in alarm["detail"]["configuration"]["metrics"]:
        dimensions = (metric.get("metricStat") or {}).get("metric", {}).get("dimensions")
        if dimensions and "FunctionName" in dimensions:
            dimensions["FunctionName"] = ["a", "b"]
    delivery = pipeline.invoke("manager", alarm)
    assert delivery.error is None
    assert all("['a', 'b']" not in i.service for i in pipeline.incidents()), [i.service for i in pipeline.incidents()]


def test_an_alarm_with_mistyped_metrics_is_refused_naming_the_fields(pipeline):
    alarm = copy.deepcopy(load_event("alarm_state_change"))
    alarm["detail"]["configuration"]["metrics"] = "oops"
    delivery = pipeline.invoke("manager", alarm)
    assert delivery.result["action"] == "rejected"
    assert "wrong type" in delivery.result["reason"] and "configuration.metrics" in delivery.result["reason"]


def test_alarm_datapoints_outside_the_storable_range_are_dropped_not_fatal(pipeline):
    alarm = copy.deepcopy(load_event("alarm_state_change"))
    alarm["detail"]["state"]["reasonData"] = json.dumps({"recentDatapoints": [1e300], "threshold": 5.0})
    delivery = pipeline.invoke("manager", alarm)
    assert delivery.error is None and delivery.result["action"] == "opened"
    [incident] = pipeline.incidents()
    assert incident.issue["signals"] == {"threshold": 5.0}


@pytest.mark.parametrize(
    ("detail_type", "agent"),
    [("FixValidated", "manager"), ("FixProposed", "qa"), ("ApprovalGranted", "manager"), ("FixRejected", "engineer")],
)
def test_handlers_refuse_a_step_from_the_wrong_source(pipeline, detail_type, agent):
    # Given a well-formed step event sent by a producer outside the contract
    detail = {"metadata": {"incident_id": "inc-x", "correlation_id": "c", "producer": "evil"}, "data": {}}
    delivery = pipeline.invoke(agent, manager_event(detail, detail_type=detail_type, source="evil.producer"))
    assert delivery.result["action"] == "rejected"
    assert "must come from" in delivery.result["reason"]


def test_rejected_lists_every_page(pipeline):
    from selfheal_core.rejections import RejectionLog

    log = RejectionLog(pipeline.env["MONITORING_TABLE_NAME"])
    for i in range(300):
        log.record(reason=f"bad {i}", event={"id": str(i), "time": f"t{i}", "pad": "x" * 6_000}, agent="manager")
    assert len(log.list(days=1)) == 300
    assert len(log.list(days=1, limit=7)) == 7


def test_a_final_attempt_rejection_for_an_incident_qa_never_rejected_does_not_make_the_engineer_give_up(pipeline):
    # Given an incident being remediated at attempt 1
    pipeline.put("IssueReported", issue())
    pipeline.invoke("manager", pipeline._receive()[0][1])
    [incident] = pipeline.incidents()
    assert incident.status == "REMEDIATING"
    # When a FixRejected at the final attempt arrives (even from QA's source) while QA rejected nothing
    fix = {
        "kind": "config",
        "provider": "runbook",
        "rationale": "r",
        "risk_level": "low",
        "changes": [{"setting": "timeout_s", "target": "orders-api", "proposed": 10}],
    }
    detail = {
        "metadata": {"incident_id": incident.incident_id, "correlation_id": "c", "producer": "qa", "attempt": 3},
        "data": {"issue": issue(), "fix": fix, "evidence": [], "fingerprint": incident.fingerprint, "reason": "no"},
    }
    delivery = pipeline.invoke("engineer", manager_event(detail, detail_type="FixRejected", source="agentops.qa"))
    # Then the Engineer answers stale and sends no RemediationFailed
    assert delivery.result["action"] == "stale"
    assert pipeline.incidents()[0].status == "REMEDIATING"


def test_a_report_near_256_kb_runs_to_the_end_without_growing_past_the_limit(pipeline, monkeypatch):
    from selfheal_core.bus import MAX_REQUEST_BYTES, EventPublisher, entry_size

    sizes = []
    original = EventPublisher.entry

    def measured(self, message):
        entry = original(self, message)
        sizes.append(entry_size(entry))
        return entry

    monkeypatch.setattr(EventPublisher, "entry", measured)
    # Given a valid report of ~250 KB (long log lines as evidence)
    evidence = [f"{i:04d} ERROR timeout calling payments " + "x" * 1_200 for i in range(200)]
    detail = issue(evidence=evidence, signals={"p95_ms": 4000.0, "timeout_s": 3.0})
    assert 240_000 < len(json.dumps(detail)) < MAX_REQUEST_BYTES
    delivery = pipeline.invoke("manager", manager_event(detail))
    deliveries = [delivery, *pipeline.run()]
    # Then no step failed, every event stayed far below the limit, and nothing of the evidence was lost
    assert all(d.error is None for d in deliveries), [d.error for d in deliveries if d.error]
    assert sizes and max(sizes) < MAX_REQUEST_BYTES // 2
    [incident] = pipeline.incidents()
    assert incident.status not in ("DETECTED", "REMEDIATING", "FIX_PROPOSED", "VALIDATING", "VALIDATED")
    from selfheal_core.artifacts import ArtifactStore
    from selfheal_core.events import ArtifactRef

    ref = ArtifactRef.model_validate(incident.issue["evidence_artifact"])
    assert ArtifactStore(pipeline.env["ARTIFACTS_BUCKET"]).get_json(ref) == evidence


def test_a_corrected_report_sent_again_with_the_same_key_is_not_answered_from_a_cached_refusal(pipeline):
    # Given a malformed report with a producer idempotency key (refused)
    bad = pipeline.invoke("manager", manager_event(issue(issue_type="nonsense", idempotency_key="acme-7")))
    assert bad.result["action"] == "rejected"
    # When the producer fixes it and sends it again with the same key
    good = pipeline.invoke("manager", manager_event(issue(idempotency_key="acme-7")))
    # Then it runs: the refusal was not cached under the key
    assert good.result["action"] == "opened" and len(pipeline.incidents()) == 1


OTHER_ACCOUNT = "999999999999"
OWN_ALARM_ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-api-Errors"


@pytest.mark.parametrize(
    "envelope, named",
    [
        ({"account": OTHER_ACCOUNT}, OTHER_ACCOUNT),
        ({"region": "eu-west-1"}, "eu-west-1"),
        ({"resources": [f"arn:aws:cloudwatch:us-east-1:{OTHER_ACCOUNT}:alarm:orders-api-Errors"]}, OTHER_ACCOUNT),
        ({"resources": ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:orders-api-Errors"]}, "eu-west-1"),
    ],
)
def test_an_alarm_from_another_account_or_region_is_refused_and_changes_nothing(pipeline, envelope, named):
    """Accounts of one organisation reuse function names: staging's orders-api alarm (a default
    bus receiving the organisation's events) must not change prod's orders-api."""
    pipeline.create_function("orders-api", timeout=3)
    alarm = {**copy.deepcopy(load_event("alarm_state_change")), **envelope}

    delivery = pipeline.invoke("manager", alarm)
    pipeline.run()

    assert delivery.error is None and delivery.result["action"] == "rejected", delivery.result
    [rejected] = rejections(pipeline)
    assert "another account or Region" in rejected["reason"] and named in rejected["reason"], rejected["reason"]
    assert "account 123456789012 / Region us-east-1" in rejected["reason"]  # this Manager's, from its context
    assert pipeline.incidents() == []
    assert pipeline.function_config("orders-api")["timeout_s"] == 3


def test_an_alarm_of_this_account_and_region_is_taken_on(pipeline):
    pipeline.create_function("orders-api", timeout=3)
    alarm = {**copy.deepcopy(load_event("alarm_state_change")), "resources": [OWN_ALARM_ARN]}
    delivery = pipeline.invoke("manager", alarm)
    assert delivery.result["action"] == "opened", delivery.result
    assert rejections(pipeline) == []


@pytest.mark.parametrize(
    "arn, named",
    [
        (
            f"arn:aws:lambda:us-east-1:{OTHER_ACCOUNT}:function:orders-api",
            f"account {OTHER_ACCOUNT} / Region us-east-1",
        ),
        ("arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live", "account 123456789012 / Region eu-west-1"),
    ],
)
def test_a_reported_function_arn_of_another_account_or_region_is_a_gap_not_our_namesake(pipeline, arn, named):
    """`resource` as an ARN is exact: only its name would be left, and that names our namesake."""
    pipeline.create_function("orders-api", timeout=3)
    pipeline.put("IssueReported", issue(resource=arn, summary="staging orders-api times out"))
    pipeline.run()

    [incident] = pipeline.incidents()
    assert pipeline.function_config("orders-api")["timeout_s"] == 3, (incident.status, incident.last_reason)
    assert incident.investigation.get("target") is None, incident.investigation
    [gap] = incident.investigation["gaps"]
    assert f"function ARN in {named}, not this Manager's" in gap, gap


def test_a_reported_function_arn_of_this_account_and_region_is_investigated(pipeline):
    arn = pipeline.create_function("orders-api", timeout=3)
    pipeline.put("IssueReported", issue(resource=arn))
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.investigation["target"] == "orders-api", incident.investigation
    assert not any("not this Manager's" in gap for gap in incident.investigation["gaps"])


def test_a_refused_event_delivered_again_or_replayed_is_listed_once(pipeline):
    # Given a report the Manager refuses (no summary)
    refused = manager_event(issue(summary=""))
    assert pipeline.invoke("manager", refused).result["action"] == "rejected"
    # When Lambda retries it (same id) and an EventBridge replay sends it again (new id, replay-name)
    again = pipeline.invoke("manager", refused)
    replayed = pipeline.invoke("manager", {**refused, "id": str(uuid.uuid4()), "replay-name": "r1"})
    # Then each answer is still the refusal, but `selfheal rejected` lists the event once
    assert again.result["action"] == replayed.result["action"] == "rejected"
    assert [r["event_id"] for r in rejections(pipeline)] == [refused["id"]]
    # And another report refused for the same reason, sent later, is listed on its own
    later = {**refused, "id": str(uuid.uuid4()), "time": "2026-11-27T10:05:00Z"}
    pipeline.invoke("manager", later)
    assert len(rejections(pipeline)) == 2


@pytest.mark.parametrize(
    ("detail_type", "detail", "reason"),
    [
        ("CloudWatch Alarm State Change", None, "comes from aws.cloudwatch only"),
        ("Scheduled Event", {}, "comes from aws.events only"),
    ],
)
def test_a_producer_cannot_pass_its_event_off_as_aws(pipeline, detail_type, detail, reason):
    """The Unrouted rule brings a producer's event of any detail-type to the Manager: an alarm in
    a producer's name would heal a function, a schedule would run scans at the sender's rate."""
    # Given a function a forged alarm would change
    pipeline.create_function("orders-api", timeout=3)

    # When a producer puts AWS's detail-types on the bus
    pipeline.put(detail_type, detail or load_event("alarm_state_change")["detail"], source="acme.evil")
    deliveries = pipeline.run()

    # Then the Manager refused it, listed with the reason, and nothing opened or changed
    assert deliveries and all(d.error is None for d in deliveries)
    assert pipeline.incidents() == []
    assert any(reason in r["reason"] for r in rejections(pipeline)), rejections(pipeline)
    import boto3

    assert boto3.client("lambda").get_function_configuration(FunctionName="orders-api")["Timeout"] == 3


@pytest.mark.parametrize("event_id", [None, ""])
def test_an_alarm_invoked_directly_without_an_event_id_is_named_by_its_content(pipeline, event_id):
    """EventBridge always gives an id; a direct invoke may not. It crashed after the incident was
    written, leaving it REMEDIATING with no request for a fix."""
    pipeline.create_function("orders-api", timeout=3)
    alarm = load_event("alarm_state_change")
    if event_id is None:
        alarm.pop("id")
    else:
        alarm["id"] = event_id

    delivery = pipeline.invoke("manager", alarm)
    again = pipeline.invoke("manager", alarm)  # the same delivery, retried

    assert delivery.error is None and delivery.result["action"] == "opened", delivery.error
    assert again.error is None and again.result["incident_id"] == delivery.result["incident_id"]
    [incident] = pipeline.incidents()
    assert incident.correlation_id
