"""Agent-to-agent messages: publish on the bus and record the collaboration in one step."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from .bus import EventPublisher, Outgoing
from .catalog import RECIPIENTS
from .events import DetailType, Metadata, utc_now


class CollaborationRecorder(Protocol):
    def record_collaboration(self, from_agent: str, to_agent: str, message_type: str) -> Any: ...


class Messenger:
    def __init__(self, agent: str, publisher: EventPublisher, recorder: CollaborationRecorder) -> None:
        self.agent = agent
        self.publisher = publisher
        self.recorder = recorder

    def send(self, detail_type: DetailType, metadata: Metadata, data: BaseModel) -> None:
        self.publisher.publish(Outgoing(detail_type.value, metadata, data))
        recipient = RECIPIENTS.get(detail_type)
        if recipient:
            self.recorder.record_collaboration(self.agent, recipient, detail_type.value)


def follow_up(metadata: Metadata, producer: str, *, attempt: int | None = None) -> Metadata:
    """Metadata for the next message of the same incident (same correlation id)."""
    return metadata.model_copy(
        update={"producer": producer, "created_at": utc_now(), "attempt": attempt or metadata.attempt}
    )
