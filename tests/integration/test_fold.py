"""A duplicate report folds in 3 API calls, is counted once per delivery, and never folds into nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import boto3

from tests.conftest import load_event
from tests.support.pipeline import Pipeline


def alarm_delivery(alarm: dict[str, Any]) -> dict[str, Any]:
    """One delivery of the alarm as EventBridge hands it to the Manager: a new event id each time."""
    return {**alarm, "id": str(uuid.uuid4())}


def opened(pipeline: Pipeline, alarm: dict[str, Any]) -> Any:
    pipeline.put_raw_event(alarm)
    pipeline.run()
    [incident] = pipeline.incidents()
    return incident


def calls_of(pipeline: Pipeline, event: dict[str, Any], monkeypatch: Any) -> tuple[Any, Counter[str]]:
    """The Manager's answer to one delivery, and the AWS API calls it made (by service and operation)."""
    from botocore.client import BaseClient

    made: Counter[str] = Counter()
    real = BaseClient._make_api_call

    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        made[f"{client.meta.service_model.service_name}.{operation}"] += 1
        return real(client, operation, params)

    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", counted)
        delivery = pipeline.invoke("manager", event)
    assert delivery.error is None, delivery.error
    return delivery.result, made


def incident_cost(pipeline: Pipeline, incident_id: str) -> float:
    from selfheal_core.incidents import IncidentStore

    incident = IncidentStore(pipeline.env["DECISIONS_TABLE_NAME"]).get(incident_id)
    assert incident is not None
    return incident.cost_usd


def folds(pipeline: Pipeline, incident_id: str) -> list[dict[str, Any]]:
    return [d for d in pipeline.decisions(incident_id) if d["decision_type"] == "fold_duplicate"]


def test_a_duplicate_is_folded_in_three_calls_and_counted_once_per_delivery(aws, monkeypatch):
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"payments-api": {"timeout": 3}})
    alarm = load_event("alarm_state_change")
    incident = opened(pipeline, alarm)

    duplicate = alarm_delivery(alarm)
    result, made = calls_of(pipeline, duplicate, monkeypatch)

    assert result == {"action": "folded", "incident_id": incident.incident_id}
    # The lock read, then the count with its decision and the invocation's cost: no idempotency record,
    # no open attempt. (The price table's parameters are cached for PARAMETERS_MAX_AGE in a function;
    # the tests set 0.)
    made = Counter({call: n for call, n in made.items() if not call.startswith("ssm.")})
    assert sorted(made.elements()) == ["dynamodb.GetItem", "dynamodb.TransactWriteItems"]
    assert incident_cost(pipeline, incident.incident_id) > incident.cost_usd  # the fold's own cost is counted
    [incident] = pipeline.incidents()
    assert incident.duplicates == 1
    [decision] = folds(pipeline, incident.incident_id)
    assert decision["correlation_id"] == incident.correlation_id

    # The same delivery again (a Lambda retry, an at-least-once duplicate): not counted twice, its cost settled.
    before = incident_cost(pipeline, incident.incident_id)
    again, _ = calls_of(pipeline, duplicate, monkeypatch)
    assert again == result
    assert incident_cost(pipeline, incident.incident_id) > before
    [incident] = pipeline.incidents()
    assert incident.duplicates == 1 and len(folds(pipeline, incident.incident_id)) == 1

    # Another delivery of the same alarm is another duplicate.
    calls_of(pipeline, alarm_delivery(alarm), monkeypatch)
    [incident] = pipeline.incidents()
    assert incident.duplicates == 2 and len(folds(pipeline, incident.incident_id)) == 2


def test_a_lock_whose_incident_is_gone_opens_a_new_incident_instead_of_folding(aws, monkeypatch):
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"payments-api": {"timeout": 3}})
    alarm = load_event("alarm_state_change")
    ghost = opened(pipeline, alarm)
    table = boto3.resource("dynamodb").Table(pipeline.env["DECISIONS_TABLE_NAME"])
    table.delete_item(Key={"pk": f"INCIDENT#{ghost.incident_id}", "sk": "#META"})

    result, _ = calls_of(pipeline, alarm_delivery(alarm), monkeypatch)

    assert result["action"] == "opened" and result["incident_id"] != ghost.incident_id
    assert not folds(pipeline, ghost.incident_id)  # no fold record for an incident that does not exist


def test_the_delivery_that_opened_the_incident_is_not_its_own_duplicate(aws, monkeypatch):
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"payments-api": {"timeout": 3}})
    alarm = load_event("alarm_state_change")
    pipeline.put_raw_event(alarm)
    [first] = pipeline.run()[:1]

    retried = pipeline.invoke("manager", first.event)  # a Lambda retry of the opening invocation

    assert retried.error is None and retried.result["action"] != "folded"
    [incident] = pipeline.incidents()
    assert incident.duplicates == 0


def issue_entry(pipeline: Pipeline) -> dict[str, Any]:
    detail = '{"service": "payments-api", "issue_type": "latency", "severity": "high", "summary": "slow", "signals": {"p95_ms": 4000}}'
    return {
        "Source": "com.example.probe",
        "DetailType": "IssueReported",
        "Detail": detail,
        "EventBusName": pipeline.env["EVENT_BUS_NAME"],
    }


def test_the_same_report_sent_five_times_at_once_is_one_incident_and_four_duplicates(aws):
    # Given a producer that sends the same report five times in one PutEvents (the same second,
    # the same detail: only the event ids differ)
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"payments-api": {"timeout": 3}})
    pipeline.events.put_events(Entries=[issue_entry(pipeline)] * 5)

    # When the Manager takes them, and one of them is retried by Lambda
    deliveries = pipeline.run()
    twin = next(d for d in deliveries if d.agent == "manager" and d.result.get("action") == "folded")
    pipeline.invoke("manager", twin.event)

    # Then one incident counts the other four once each, and the Engineer is asked once
    [incident] = pipeline.incidents()
    assert incident.duplicates == 4
    assert len(folds(pipeline, incident.incident_id)) == 4
    requested = [d for d in deliveries if d.agent == "engineer" and d.event["detail-type"] == "RemediationRequested"]
    assert len(requested) == 1
    assert [h["status"] for h in incident.status_history].count("REMEDIATING") == 1


def test_a_twin_that_races_the_opening_report_is_folded_by_the_open_path(aws, monkeypatch):
    # Given the opening report and its twin (same content, another event id), where the twin finds
    # no lock yet when it looks (it raced the opening transaction) and meets the opened incident
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={"payments-api": {"timeout": 3}})
    pipeline.events.put_events(Entries=[issue_entry(pipeline)] * 2)
    first, second = (event for agent, event in pipeline._receive() if agent == "manager")
    pipeline.invoke("manager", first)
    from selfheal_core.incidents import IncidentStore

    monkeypatch.setattr(IncidentStore, "live_lock", lambda self, fingerprint: None)

    # When the twin is handled
    answer = pipeline.invoke("manager", second).result

    # Then it is counted as a duplicate, not taken for a retry that re-runs the triage
    [incident] = pipeline.incidents()
    assert answer["action"] == "folded" and incident.duplicates == 1, answer
