"""Messenger.held: several messages of one step in one PutEvents, each still recorded as a collaboration."""

from __future__ import annotations

from typing import Any

import pytest

from selfheal_core.bus import EventPublisher, PublishError
from selfheal_core.events import DetailType, InfoV1, Metadata
from selfheal_core.messaging import Messenger


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    def record_collaboration(self, from_agent: str, to_agent: str, message_type: str) -> None:
        self.records.append((from_agent, to_agent, message_type))


class Events:
    """An events client that answers PutEvents; entries named in `failing` fail for good."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.failing = failing

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls.append([e["DetailType"] for e in Entries])
        return {
            "Entries": [
                {"ErrorCode": "AccessDeniedException"} if e["DetailType"] in self.failing else {"EventId": "id"}
                for e in Entries
            ]
        }


@pytest.fixture
def wired(monkeypatch):
    def make(failing: frozenset[str] = frozenset()) -> tuple[Messenger, Events, Recorder]:
        events, recorder = Events(failing), Recorder()
        monkeypatch.setattr("selfheal_core.aws.client", lambda service: events)
        return Messenger("manager", EventPublisher("bus", "agentops.manager"), recorder), events, recorder

    return make


METADATA = Metadata(incident_id="inc-1", correlation_id="c-1", producer="manager", attempt=1)
INFO = InfoV1(status="REMEDIATING", summary="s")


def test_messages_held_by_a_step_go_out_in_one_put_events_each_recorded(wired):
    messenger, events, recorder = wired()
    with messenger.held():
        messenger.send(DetailType.ISSUE_DETECTED, METADATA, INFO)
        messenger.send(DetailType.APPROVAL_REQUESTED, METADATA, INFO)
        messenger.send(DetailType.INCIDENT_ESCALATED, METADATA, INFO)
        assert events.calls == []  # nothing sent before the step ends
    assert events.calls == [["IssueDetected", "ApprovalRequested", "IncidentEscalated"]]
    # Routed messages are recorded one by one (IssueDetected is informational: no recipient, no record)
    assert recorder.records == [
        ("manager", "operator", "ApprovalRequested"),
        ("manager", "operator", "IncidentEscalated"),
    ]


def test_held_messages_are_sent_when_the_step_raises(wired):
    messenger, events, recorder = wired()
    with pytest.raises(RuntimeError), messenger.held():
        messenger.send(DetailType.INCIDENT_ESCALATED, METADATA, INFO)
        raise RuntimeError("the apply step failed")
    assert events.calls == [["IncidentEscalated"]] and len(recorder.records) == 1


def test_a_failed_entry_raises_and_records_no_collaboration(wired):
    messenger, events, recorder = wired(frozenset({"IssueDetected"}))
    with pytest.raises(PublishError), messenger.held():
        messenger.send(DetailType.ISSUE_DETECTED, METADATA, INFO)
        messenger.send(DetailType.APPROVAL_REQUESTED, METADATA, INFO)
    assert events.calls == [["IssueDetected", "ApprovalRequested"]] and recorder.records == []


def test_a_send_outside_a_held_block_goes_out_at_once(wired):
    messenger, events, _ = wired()
    messenger.send(DetailType.ISSUE_DETECTED, METADATA, INFO)
    assert events.calls == [["IssueDetected"]]
