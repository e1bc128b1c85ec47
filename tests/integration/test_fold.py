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
