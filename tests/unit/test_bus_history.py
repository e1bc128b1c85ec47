"""`selfheal tail` lines: who sent an event, who receives it, and the incident it concerns."""

from __future__ import annotations

from selfheal.bus_history import tail_line


def event(detail_type: str, source: str, **data: object) -> dict:
    return {
        "id": "e-1",
        "time": "2026-11-27T10:00:00Z",
        "detail-type": detail_type,
        "source": source,
        "detail": {"metadata": {"incident_id": "inc-1", "attempt": 2}, "data": data},
    }


def test_a_step_event_names_its_sender_and_the_agent_that_receives_it():
    line = tail_line(event("FixProposed", "agentops.engineer"))
    assert (line["from"], line["to"], line["incident_id"], line["attempt"]) == ("engineer", "qa", "inc-1", 2)
    assert tail_line(event("RemediationRequested", "agentops.manager"))["to"] == "engineer"
    assert tail_line(event("FixValidated", "agentops.qa"))["to"] == "manager"


def test_notifications_go_to_the_operator_and_reports_to_the_manager():
    assert tail_line(event("IncidentEscalated", "agentops.manager", status="ESCALATED"))["to"] == "operator"
    assert tail_line(event("IssueReported", "acme.orders"))["to"] == "manager"
    assert tail_line({"detail-type": "Something", "source": "x", "detail": "not an object"})["to"] == "audit"
