"""Incident state: forward-only conditional transitions and race-free duplicate folding."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from moto import mock_aws

from selfheal_core import aws
from selfheal_core.incidents import IncidentContention, IncidentStore, Status
from tests.support.atomic import make_dynamodb_requests_atomic
from tests.support.tables import create_tables


@pytest.fixture
def store(monkeypatch):
    make_dynamodb_requests_atomic(monkeypatch)
    with mock_aws():
        aws.reset_clients()
        create_tables(
            os.environ["DECISIONS_TABLE_NAME"],
            os.environ["MONITORING_TABLE_NAME"],
            os.environ["IDEMPOTENCY_TABLE_NAME"],
        )
        yield IncidentStore(os.environ["DECISIONS_TABLE_NAME"])


def open_one(store, incident_id="inc-1", fingerprint="fp-1"):
    return store.open_or_fold(
        incident_id=incident_id,
        fingerprint=fingerprint,
        correlation_id=f"corr-{incident_id}",
        issue={"service": "orders", "issue_type": "latency", "severity": "high", "summary": "slow"},
        origin="issue",
    )


def test_transitions_only_move_forward(store):
    open_one(store)
    assert store.transition("inc-1", Status.REMEDIATING, reason="go", new_attempt=1).status == "REMEDIATING"
    assert store.transition("inc-1", Status.FIX_PROPOSED, reason="fix", expected_attempt=1) is not None

    # A replayed RemediationRequested cannot drag it back, and a wrong attempt is refused.
    assert store.transition("inc-1", Status.REMEDIATING, reason="replay", new_attempt=1) is None
    assert store.transition("inc-1", Status.VALIDATING, reason="qa", expected_attempt=2) is None
    assert store.get("inc-1").status == "FIX_PROPOSED"
    history = [
        h["status"]
        for h in store._table.get_item(Key={"pk": "INCIDENT#inc-1", "sk": "#META"})["Item"]["status_history"]
    ]
    assert history == ["DETECTED", "REMEDIATING", "FIX_PROPOSED"]


def test_a_forbidden_set_refuses_each_of_its_values_and_nothing_else(store):
    in_flight = frozenset({"applying", "rolling_back"})
    open_one(store)
    for phase in sorted(in_flight):
        store.record("inc-1", statuses=frozenset({Status.DETECTED}), values={"heal_phase": phase})
        assert store.transition("inc-1", Status.RESOLVED, reason="ok", forbid={"heal_phase": in_flight}) is None
    assert store.get("inc-1").status == "DETECTED"
    store.record("inc-1", statuses=frozenset({Status.DETECTED}), values={"heal_phase": "applied"})
    assert store.transition("inc-1", Status.RESOLVED, reason="ok", forbid={"heal_phase": in_flight}) is not None
    # An absent attribute holds none of the values.
    open_one(store, "inc-2", "fp-2")
    assert store.transition("inc-2", Status.RESOLVED, reason="ok", forbid={"heal_phase": in_flight}) is not None


def test_a_stored_answer_lands_with_its_status_or_neither_does(store):
    # Given an incident REMEDIATING at attempt 1, and a step's answer to store with FIX_PROPOSED
    from selfheal_core.incidents import ItemRefused

    open_one(store)
    store.transition("inc-1", Status.REMEDIATING, reason="go", new_attempt=1)
    answer = {"pk": "INCIDENT#inc-1", "sk": "PROPOSAL#001#000", "fix": "raise memory"}
    put = {"Item": answer, "ConditionExpression": "attribute_not_exists(pk)"}

    def stored():
        return store._table.get_item(Key={"pk": "INCIDENT#inc-1", "sk": "PROPOSAL#001#000"}).get("Item")

    # When the incident may not move (a wrong attempt), nothing is written: no answer without its status
    assert store.transition_and_put("inc-1", Status.FIX_PROPOSED, put=put, reason="fix", expected_attempt=2) is False
    assert stored() is None and store.get("inc-1").status == "REMEDIATING"

    # When it may, both land in one write
    assert store.transition_and_put("inc-1", Status.FIX_PROPOSED, put=put, reason="fix", expected_attempt=1) is True
    assert stored()["fix"] == "raise memory" and store.get("inc-1").status == "FIX_PROPOSED"

    # And another answer for the same step is refused (first writer wins) and changes nothing: no status
    # without its answer, even where the status itself could be redone
    other = {**put, "Item": {**answer, "fix": "something else"}}
    with pytest.raises(ItemRefused):
        store.transition_and_put(
            "inc-1",
            Status.FIX_PROPOSED,
            put=other,
            reason="again",
            expected_attempt=1,
            redo_from=frozenset({Status.FIX_PROPOSED}),
        )
    assert stored()["fix"] == "raise memory"
    assert store.get("inc-1").last_reason == "fix"


def test_a_transaction_cancelled_by_a_concurrent_write_is_tried_again_in_process(store, monkeypatch):
    # Given a step's answer whose first transaction is cancelled by a conflict on the incident item
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    open_one(store)
    store.transition("inc-1", Status.REMEDIATING, reason="go", new_attempt=1)
    original = BaseClient._make_api_call
    cancelled = []

    def conflict_once(self, operation, params):
        if operation == "TransactWriteItems" and not cancelled:
            cancelled.append(operation)
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
                },
                operation,
            )
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", conflict_once)
    answer = {"pk": "INCIDENT#inc-1", "sk": "PROPOSAL#001#000", "fix": "raise memory"}

    # When it is written, it lands: the conflict was tried again, not raised to redo the step
    put = {"Item": answer, "ConditionExpression": "attribute_not_exists(pk)"}
    assert store.transition_and_put("inc-1", Status.FIX_PROPOSED, put=put, reason="fix", expected_attempt=1)
    assert cancelled and store.get("inc-1").status == "FIX_PROPOSED"


def test_concurrent_reports_open_exactly_one_incident(store):
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: open_one(store, incident_id=f"inc-{i}"), range(24)))

    opened = [incident for incident, is_new in results if is_new]
    folded = [incident for incident, is_new in results if not is_new]
    assert len(opened) == 1
    assert len(folded) == 23 and {i.incident_id for i in folded} == {opened[0].incident_id}
    assert store.get(opened[0].incident_id).duplicates == 23


def test_late_duplicates_fold_into_a_closed_incident_during_its_cooldown(store):
    open_one(store)
    store.transition("inc-1", Status.RESOLVED, reason="fixed")

    incident, is_new = open_one(store, incident_id="inc-2")

    assert not is_new and incident.incident_id == "inc-1" and incident.duplicates == 1


def test_after_the_cooldown_or_an_explicit_release_a_recurrence_opens_a_new_incident(store):
    no_cooldown = IncidentStore(store.table_name, cooldown_seconds=0)
    open_one(no_cooldown)
    no_cooldown.transition("inc-1", Status.RESOLVED, reason="fixed")
    time.sleep(0.01)
    incident, is_new = open_one(no_cooldown, incident_id="inc-2")
    assert is_new and incident.incident_id == "inc-2"

    store.transition("inc-2", Status.RESOLVED, reason="alarm OK")
    store.release_now("fp-1", "inc-2")
    incident, is_new = open_one(store, incident_id="inc-3")
    assert is_new and store.open_incident_for("fp-1") == "inc-3"


def test_list_recent_and_cost_total(store):
    open_one(store)
    store.add_cost("inc-1", 0.0125)
    store.add_cost("inc-1", 0.0005)

    [incident] = store.list_recent(days=1)
    assert incident.public()["cost_usd"] == pytest.approx(0.013)
    assert set(incident.public()) >= {"incident_id", "status", "attempts", "cost_usd"}


def test_a_report_that_recurs_after_the_lock_expired_opens_a_new_incident(store):
    # Given an incident that closed, and its fingerprint lock removed by DynamoDB's TTL
    open_one(store)
    store.transition("inc-1", Status.RESOLVED, reason="fixed")
    store._table.delete_item(Key={"pk": "FINGERPRINT#fp-1", "sk": "#OPEN"})
    # When a retry of the delivery that opened it arrives, it finds its own (closed) incident, no recursion
    again, is_new = open_one(store)
    assert (again.incident_id, again.status, is_new) == ("inc-1", "RESOLVED", False)
    # And a new report (a new delivery) opens a new incident
    fresh, is_new = open_one(store, incident_id="inc-2")
    assert is_new and fresh.incident_id == "inc-2" and store.open_incident_for("fp-1") == "inc-2"


def test_a_dangling_lock_never_creates_a_partial_incident(store):
    # Given a lock whose incident item does not exist (written by hand, or a bug)
    store._table.put_item(Item={"pk": "FINGERPRINT#fp-1", "sk": "#OPEN", "incident_id": "inc-ghost"})
    # When a report arrives, it is not folded into the ghost (no partial item is created)
    incident, is_new = open_one(store)
    assert "Item" not in store._table.get_item(Key={"pk": "INCIDENT#inc-ghost", "sk": "#META"})
    # Then the dangling lock is replaced and the report opens its own incident
    assert is_new and store.open_incident_for("fp-1") == incident.incident_id == "inc-1"


def test_a_lock_that_keeps_changing_is_raised_for_the_lambda_retry(store, monkeypatch):
    # Given a lock that is always held, yet never readable (it changes under every read)
    monkeypatch.setattr(store, "open_incident_for", lambda fingerprint: None)
    store._table.put_item(Item={"pk": "FINGERPRINT#fp-1", "sk": "#OPEN", "incident_id": "inc-other"})
    # Then the tries are bounded and the delivery fails visibly (retry, then DLQ), no RecursionError
    with pytest.raises(IncidentContention):
        open_one(store)


def test_throttling_is_raised_for_the_lambda_retry_not_taken_for_a_held_lock(store, monkeypatch):
    from botocore.exceptions import ClientError

    client = store._table.meta.client

    def throttled(**kwargs):
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "x"},
                "CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}],
            },
            "TransactWriteItems",
        )

    monkeypatch.setattr(client, "transact_write_items", throttled)
    with pytest.raises(ClientError):
        open_one(store)
