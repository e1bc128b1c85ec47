"""What tests kill agents with, and the report they drive through the chain."""

from __future__ import annotations

from typing import Any


class Killed(RuntimeError):
    """The function died (a timeout, out of memory, a kill) at this point."""


def latency_issue() -> dict[str, Any]:
    return {
        "service": "orders-api",
        "issue_type": "latency",
        "severity": "high",
        "summary": "p95 is 4 s",
        "signals": {"p95_ms": 4000.0, "timeout_s": 3.0},
    }


def die_after_publishing(monkeypatch: Any, source: str, detail_type: str) -> list[str]:
    """The first invocation of `source` that publishes `detail_type` dies right after it: the rest
    of that invocation reaches no AWS API, the monitor's settle included (its held decisions are
    lost), as for a kill or a time-out. Returns the detail-types it died after (one at most)."""
    from botocore.client import BaseClient

    from selfheal_core.bus import EventPublisher
    from tests.support.pipeline import Pipeline

    died: list[str] = []
    dead: list[bool] = []
    original_publish, original_call, original_invoke = (
        EventPublisher.publish,
        BaseClient._make_api_call,
        Pipeline.invoke,
    )

    def publish(self: Any, *messages: Any) -> None:
        original_publish(self, *messages)
        if self.source == source and not died and any(m.detail_type == detail_type for m in messages):
            died.append(detail_type)
            dead.append(True)
            raise Killed(f"killed after publishing {detail_type}")

    def call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if dead:
            raise Killed(f"dead: {operation} never sent")
        return original_call(self, operation, params)

    def invoke(self: Any, agent: str, event: dict[str, Any]) -> Any:
        try:
            return original_invoke(self, agent, event)
        finally:
            dead.clear()  # the next invocation is another process

    monkeypatch.setattr(EventPublisher, "publish", publish)
    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    monkeypatch.setattr(Pipeline, "invoke", invoke)
    return died


def expire_in_progress(pipeline: Any) -> None:
    """An invocation that died holds its idempotency key as INPROGRESS until its own time-out;
    Lambda's retry comes later than that (1-2 minutes), so the marker has expired by then."""
    import boto3

    table = boto3.resource("dynamodb").Table(pipeline.env["IDEMPOTENCY_TABLE_NAME"])
    for item in table.scan()["Items"]:
        if item.get("status") == "INPROGRESS":
            table.delete_item(Key={"id": item["id"]})
