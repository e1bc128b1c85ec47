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


class FakeStream:
    def __init__(self, updates: list[dict]) -> None:
        self.updates, self.closed = updates, False

    def __iter__(self):
        return iter(self.updates)

    def close(self) -> None:
        self.closed = True


class FakeLogs:
    """CloudWatch Logs' StartLiveTail answer: an event stream of session updates."""

    def __init__(self, messages: list[str]) -> None:
        self.stream = FakeStream(
            [{"sessionStart": {}}, {"sessionUpdate": {"sessionResults": [{"message": m} for m in messages]}}]
        )
        self.calls: list[dict] = []

    def start_live_tail(self, **kwargs):
        self.calls.append(kwargs)
        return {"responseStream": self.stream}


def test_on_aws_tail_reads_live_tail_on_the_audit_log_group(monkeypatch):
    import json

    from selfheal.bus_history import tail
    from selfheal.ops.target import Target

    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/events/selfheal-dev-audit"
    target = Target(
        env="dev",
        region="us-east-1",
        endpoint_url=None,
        local=False,
        outputs={"Selfheal-dev-Monitoring": {"AuditLogGroupArn": arn + ":*"}},
    )
    logs = FakeLogs(
        [
            json.dumps(event("FixProposed", "agentops.engineer")),
            "not json",
            json.dumps({**event("FixProposed", "agentops.engineer"), "detail": {"metadata": {"incident_id": "other"}}}),
        ]
    )
    target._clients["logs"] = logs
    lines: list[dict] = []
    emitted = tail(target, incident_id="inc-1", seconds=30, emit=lines.append)
    assert logs.calls == [{"logGroupIdentifiers": [arn]}]
    assert emitted == 1 and [(line["from"], line["to"], line["incident_id"]) for line in lines] == [
        ("engineer", "qa", "inc-1")
    ]
    assert logs.stream.closed
