"""The approvals function itself: the approver is the authenticated caller, never the body."""

from __future__ import annotations

import json
from typing import Any

from lambdas.approvals import logic
from selfheal_core.incidents import Incident

ARN = "arn:aws:iam::123456789012:user/alice"


def incident(status: str = "AWAITING_APPROVAL") -> Incident:
    return Incident(
        incident_id="inc-1",
        status=status,
        attempts=2,
        cost_usd=0.0,
        duplicates=0,
        fingerprint="f",
        correlation_id="corr",
        service="s",
        issue_type="latency",
        severity="high",
        summary="x",
        created_at="t",
        updated_at="t",
        origin="event",
        issue={},
    )


class Ports:
    def __init__(self, found: Incident | None) -> None:
        self.found = found
        self.sent: list[tuple[Any, Any, Any]] = []
        self.incidents = self
        self.publisher = self

    def get(self, incident_id: str) -> Incident | None:
        return self.found if self.found and self.found.incident_id == incident_id else None

    def send(self, detail_type: Any, metadata: Any, data: Any) -> None:
        self.sent.append((detail_type, metadata, data))


def request(body: dict[str, Any], arn: str | None = ARN, method: str = "POST") -> dict[str, Any]:
    context: dict[str, Any] = {"http": {"method": method}}
    if arn is not None:
        context["authorizer"] = {"iam": {"userArn": arn}}
    return {"version": "2.0", "requestContext": context, "body": json.dumps(body), "isBase64Encoded": False}


def test_the_approver_is_the_iam_caller_and_a_typed_name_is_only_a_comment() -> None:
    ports = Ports(incident())
    answer = logic.handle_request(
        request({"incident_id": "inc-1", "decision": "approve", "comment": "ok", "approver": "ceo@example.com"}), ports
    )  # type: ignore[arg-type]
    assert answer["statusCode"] == 202
    [(detail_type, metadata, data)] = ports.sent
    assert detail_type.value == "ApprovalGranted"
    assert data.approver == ARN and data.comment == "ok (typed name: ceo@example.com)"
    assert metadata.attempt == 2 and metadata.correlation_id == "corr" and metadata.producer == "approvals"


def test_without_an_authenticated_principal_nothing_is_sent() -> None:
    ports = Ports(incident())
    answer = logic.handle_request(
        request({"incident_id": "inc-1", "decision": "approve", "approver": "ceo@example.com"}, arn=None), ports
    )  # type: ignore[arg-type]
    assert answer["statusCode"] == 403 and ports.sent == []


def test_only_an_incident_awaiting_approval_can_be_decided() -> None:
    for found, status in ((None, 404), (incident("VALIDATED"), 409), (incident("RESOLVED"), 409)):
        ports = Ports(found)
        answer = logic.handle_request(request({"incident_id": "inc-1", "decision": "reject"}), ports)  # type: ignore[arg-type]
        assert answer["statusCode"] == status and ports.sent == []


def test_hostile_bodies_are_refused() -> None:
    ports = Ports(incident())
    for body in (
        {"incident_id": "inc-1", "decision": "delete"},
        {"decision": "approve"},
        {"incident_id": "inc-1", "decision": "approve", "comment": {"$ne": 1}},
        {"incident_id": "x" * 65, "decision": "approve"},
    ):
        assert logic.handle_request(request(body), ports)["statusCode"] == 400  # type: ignore[arg-type]
    huge = request({"incident_id": "inc-1", "decision": "approve", "comment": "x" * 10_000})
    assert logic.handle_request(huge, ports)["statusCode"] == 400  # type: ignore[arg-type]
    not_json = {**request({}), "body": "not json"}
    assert logic.handle_request(not_json, ports)["statusCode"] == 400  # type: ignore[arg-type]
    assert logic.handle_request(request({}, method="GET"), ports)["statusCode"] == 405  # type: ignore[arg-type]
    assert ports.sent == []


def test_malformed_bodies_get_400_with_a_reason_not_a_function_error() -> None:
    ports = Ports(incident())
    bodies = {
        "list-decision": '{"incident_id": "inc-1", "decision": ["approve"]}',
        "dict-decision": '{"incident_id": "inc-1", "decision": {"approve": 1}}',
        "deep-nesting": '{"incident_id": "inc-1", "x": ' + "[" * 4000 + "]" * 4000 + "}",  # RecursionError in json
        "not-utf8-base64": "//79",
    }
    answers = {}
    for name, body in bodies.items():
        event = {**request({}), "body": body, "isBase64Encoded": name == "not-utf8-base64"}
        answers[name] = logic.handle_request(event, ports)  # type: ignore[arg-type]
    assert {name: a["statusCode"] for name, a in answers.items()} == dict.fromkeys(bodies, 400)
    assert all(json.loads(a["body"])["error"] for a in answers.values())
    assert json.loads(answers["deep-nesting"]["body"])["error"] == "the body is nested too deeply"
    assert logic.handle_request({**request({}), "body": ["x"]}, ports)["statusCode"] == 400  # type: ignore[arg-type]
    assert ports.sent == []


def test_events_not_shaped_like_a_function_url_request_are_refused() -> None:
    ports = Ports(incident())
    body = {"incident_id": "inc-1", "decision": "approve"}
    signed = request(body)
    for event in (
        {**signed, "version": "1.0"},  # not payload format 2.0
        {**signed, "requestContext": {"authorizer": signed["requestContext"]["authorizer"]}},  # no http
        {**signed, "requestContext": {**signed["requestContext"], "http": "POST"}},
        {**signed, "requestContext": "arn:aws:iam::123456789012:user/eve"},
        {"incident_id": "inc-1", "decision": "approve"},
    ):
        assert logic.handle_request(event, ports)["statusCode"] == 403  # type: ignore[arg-type]
    assert ports.sent == []
