"""Approvals: the only way a human decision enters the pipeline.

Served behind a Lambda function URL with `AWS_IAM` auth, so every request is SigV4-signed and
Lambda has already authenticated the caller. The approver is the caller's IAM ARN from the
request context; whatever name the request body types is kept as part of the comment only.
The function then publishes ApprovalGranted / ApprovalDenied from `agentops.operator`, a
source the event bus policy lets no other principal use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from selfheal_core.catalog import OPERATOR_SOURCE
from selfheal_core.events import ApprovalV1, DetailType, Metadata
from selfheal_core.incidents import Incident, Status

SOURCE = OPERATOR_SOURCE
PRODUCER = "approvals"
MAX_BODY_BYTES = 8_192
DECISIONS = {"approve": DetailType.APPROVAL_GRANTED, "reject": DetailType.APPROVAL_DENIED}


class Incidents(Protocol):
    def get(self, incident_id: str) -> Incident | None: ...


class Publisher(Protocol):
    def send(self, detail_type: DetailType, metadata: Metadata, data: ApprovalV1) -> None: ...


@dataclass
class ApprovalPorts:
    incidents: Incidents
    publisher: Publisher


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _field(value: Any, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None where a level is not a JSON object."""
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def caller_arn(event: Any) -> str | None:
    """The authenticated principal (payload format 2.0, AWS_IAM auth)."""
    arn = _field(event, "requestContext", "authorizer", "iam", "userArn")
    return arn if isinstance(arn, str) and arn else None


def url_request(event: Any) -> bool:
    """Shaped like a function URL request (payload format 2.0). Only defence in depth: a direct
    Invoke can forge this shape, so the boundary is IAM (nobody holds lambda:InvokeFunction on
    this function other than through its URL; README, "Approvals")."""
    return _field(event, "version") == "2.0" and isinstance(_field(event, "requestContext", "http", "method"), str)


def parse_body(event: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON object; ValueError with the reason for anything else."""
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        raise ValueError("the body must be a JSON object of at most 8 KB")
    if event.get("isBase64Encoded"):
        import base64

        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise ValueError("the body is not base64-encoded UTF-8") from exc
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise ValueError("the body must be a JSON object of at most 8 KB")
    try:
        body = json.loads(raw or "{}")
    except RecursionError as exc:  # not a ValueError: deep nesting fits in 8 KB
        raise ValueError("the body is nested too deeply") from exc
    except ValueError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def handle_request(event: dict[str, Any], ports: ApprovalPorts) -> dict[str, Any]:
    approver = caller_arn(event)
    if approver is None or not url_request(event):
        # AWS_IAM auth always sets the caller on a function URL request; refuse anything else.
        return response(403, {"error": "not a function URL request with an authenticated IAM principal"})
    if _field(event, "requestContext", "http", "method") != "POST":
        return response(405, {"error": "POST {incident_id, decision: approve|reject, comment}"})
    try:
        body = parse_body(event)
    except ValueError as exc:
        return response(400, {"error": str(exc)})
    incident_id = body.get("incident_id")
    decision = body.get("decision")
    if not isinstance(incident_id, str) or not incident_id or len(incident_id) > 64:
        return response(400, {"error": "incident_id is required"})
    if not isinstance(decision, str) or decision not in DECISIONS:
        return response(400, {"error": "decision must be 'approve' or 'reject'"})
    comment = body.get("comment") or ""
    if not isinstance(comment, str):
        return response(400, {"error": "comment must be a string"})
    typed_name = body.get("approver")
    if isinstance(typed_name, str) and typed_name.strip():
        # A typed name proves nothing: it is kept as a remark, never as the approver.
        comment = f"{comment} (typed name: {typed_name.strip()[:200]})".strip()
    incident = ports.incidents.get(incident_id)
    if incident is None:
        return response(404, {"error": f"incident {incident_id!r} not found"})
    if incident.status != Status.AWAITING_APPROVAL.value:
        return response(
            409,
            {"error": f"incident {incident_id} is {incident.status}, not AWAITING_APPROVAL", "status": incident.status},
        )
    detail_type = DECISIONS[decision]
    metadata = Metadata(
        incident_id=incident_id,
        correlation_id=incident.correlation_id or incident_id,
        attempt=max(1, incident.attempts),
        producer=PRODUCER,
    )
    data = ApprovalV1(approver=approver[:256], comment=comment[:2_000])
    ports.publisher.send(detail_type, metadata, data)
    return response(
        202,
        {
            "incident_id": incident_id,
            "detail_type": detail_type.value,
            "approver": data.approver,
            "comment": data.comment,
            "status_before": incident.status,
        },
    )
