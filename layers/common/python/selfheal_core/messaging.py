"""Agent-to-agent messages: publish on the bus and record the collaboration in one step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
        self._held: list[Outgoing] | None = None

    def send(self, detail_type: DetailType, metadata: Metadata, data: BaseModel) -> None:
        message = Outgoing(detail_type.value, metadata, data)
        if self._held is not None:
            self._held.append(message)
            return
        self._publish([message])

    @contextmanager
    def held(self) -> Iterator[None]:
        """Messages sent inside the block go out together when it ends: one PutEvents for a step
        that sends several. They go out also when the block raises (as they would have been sent
        one by one before the failure); a failed entry raises PublishError as for a single send."""
        if self._held is not None:  # nested: the outer block sends
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                self._publish(held)

    def _publish(self, messages: list[Outgoing]) -> None:
        self.publisher.publish(*messages)
        # Each message keeps its own collaboration record, once all were accepted by the bus.
        for message in messages:
            recipient = RECIPIENTS.get(message.detail_type)
            if recipient:
                self.recorder.record_collaboration(self.agent, recipient, message.detail_type)


def follow_up(metadata: Metadata, producer: str, *, attempt: int | None = None) -> Metadata:
    """Metadata for the next message of the same incident (same correlation id)."""
    return metadata.model_copy(
        update={"producer": producer, "created_at": utc_now(), "attempt": attempt or metadata.attempt}
    )
