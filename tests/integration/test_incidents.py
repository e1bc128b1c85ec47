"""Incident state: forward-only conditional transitions and race-free duplicate folding."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from moto import mock_aws

from selfheal_core import aws
from selfheal_core.incidents import IncidentStore, Status
from tests.support.atomic import make_dynamodb_requests_atomic
from tests.support.tables import create_tables


@pytest.fixture
def store(monkeypatch):
    make_dynamodb_requests_atomic(monkeypatch)
    with mock_aws():
        aws.reset_clients()
        create_tables(os.environ["DECISIONS_TABLE_NAME"], os.environ["MONITORING_TABLE_NAME"], os.environ["IDEMPOTENCY_TABLE_NAME"])
        yield IncidentStore(os.environ["DECISIONS_TABLE_NAME"])


def open_one(store, incident_id="inc-1", fingerprint="fp-1"):
    return store.open_or_fold(incident_id=incident_id, fingerprint=fingerprint, correlation_id=f"corr-{incident_id}",
                              issue={"service": "orders", "issue_type": "latency", "severity": "high", "summary": "slow"},
                              origin="issue")


def test_transitions_only_move_forward(store):
    open_one(store)
    assert store.transition("inc-1", Status.REMEDIATING, reason="go", new_attempt=1).status == "REMEDIATING"
    assert store.transition("inc-1", Status.FIX_PROPOSED, reason="fix", expected_attempt=1) is not None

    # A replayed RemediationRequested cannot drag it back, and a wrong attempt is refused.
    assert store.transition("inc-1", Status.REMEDIATING, reason="replay", new_attempt=1) is None
    assert store.transition("inc-1", Status.VALIDATING, reason="qa", expected_attempt=2) is None
    assert store.get("inc-1").status == "FIX_PROPOSED"
    history = [h["status"] for h in store._table.get_item(Key={"pk": "INCIDENT#inc-1", "sk": "#META"})["Item"]["status_history"]]
    assert history == ["DETECTED", "REMEDIATING", "FIX_PROPOSED"]


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
