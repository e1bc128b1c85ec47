"""Messenger.held: several messages of one step in one PutEvents, each still recorded as a collaboration."""

from __future__ import annotations

from typing import Any

import pytest

from selfheal_core.bus import MAX_REQUEST_BYTES, EventPublisher, PublishError, entry_size, put_entries, requests
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


def test_entry_size_is_eventbridges_count():
    """Time is 14 bytes; Source, DetailType, Detail and each resource count their UTF-8 bytes; the bus name does not."""
    entry = {"EventBusName": "b" * 50, "Source": "src", "DetailType": "dt", "Detail": '{"é":1}', "Resources": ["r1"]}

    assert entry_size(entry) == 3 + 2 + len('{"é":1}'.encode()) + 2
    assert entry_size({**entry, "Time": "2026-11-29T00:00:00Z"}) == entry_size(entry) + 14


def test_entries_that_add_up_to_more_than_256_kb_go_in_separate_requests():
    """PutEvents refuses a whole request over 256 KB: the entries are cut into requests that fit."""
    events = Events()
    big = {"Source": "s", "DetailType": "Big", "Detail": "x" * 100_000}
    small = {"Source": "s", "DetailType": "Small", "Detail": "{}"}

    result = put_entries([big, big, big, small], client=events)

    assert events.calls == [["Big", "Big"], ["Big", "Small"]]
    assert len(result.event_ids) == 4 and result.failed == []
    assert all(sum(entry_size(e) for e in request) <= MAX_REQUEST_BYTES for request in requests([big, big, big, small]))


def test_an_entry_over_256_kb_is_reported_and_never_sent_while_the_others_go_out():
    events = Events()
    huge = {"Source": "s", "DetailType": "Huge", "Detail": "x" * (MAX_REQUEST_BYTES + 1)}
    small = {"Source": "s", "DetailType": "Small", "Detail": "{}"}

    result = put_entries([huge, small], client=events)

    assert events.calls == [["Small"]]
    assert [f["error_code"] for f in result.failed] == ["EntryTooLarge"]
    assert "bytes" in result.failed[0]["error_message"]


def test_a_step_that_publishes_more_than_256_kb_at_once_sends_it_in_several_requests(wired):
    messenger, events, recorder = wired()
    padding = "x" * 150_000
    with messenger.held():
        messenger.send(DetailType.ISSUE_DETECTED, METADATA, InfoV1(status="REMEDIATING", summary=padding[:1000]))
        for _ in range(2):
            messenger.send(DetailType.INCIDENT_ESCALATED, METADATA, InfoV1.model_construct(status="X", summary=padding))
    assert events.calls == [["IssueDetected", "IncidentEscalated"], ["IncidentEscalated"]]
    assert recorder.records == [("manager", "operator", "IncidentEscalated")] * 2
