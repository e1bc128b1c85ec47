"""Publish envelopes to the agents bus: batches of 10, entries reported failed are retried."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from . import aws
from .events import Metadata, build_detail

MAX_BATCH = 10
MAX_ENTRY_BYTES = 256 * 1024
MAX_ROUNDS = 4


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True)
class Outgoing:
    detail_type: str
    metadata: Metadata
    data: BaseModel


class EventPublisher:
    def __init__(self, bus_name: str, source: str) -> None:
        self.bus_name = bus_name
        self.source = source

    def entry(self, message: Outgoing) -> dict[str, Any]:
        detail = json.dumps(build_detail(message.metadata, message.data), separators=(",", ":"))
        entry = {
            "EventBusName": self.bus_name,
            "Source": self.source,
            "DetailType": message.detail_type,
            "Detail": detail,
        }
        size = sum(len(str(v).encode()) for v in entry.values())
        if size > MAX_ENTRY_BYTES:
            # Never send: large content belongs in the artifacts store (claim check).
            raise PublishError(f"{message.detail_type} is {size} bytes; move content to an artifact reference")
        return entry

    def publish(self, *messages: Outgoing) -> None:
        entries = [self.entry(m) for m in messages]
        for start in range(0, len(entries), MAX_BATCH):
            self._put_batch(entries[start : start + MAX_BATCH])

    def _put_batch(self, batch: list[dict[str, Any]]) -> None:
        pending = batch
        for round_ in range(MAX_ROUNDS):
            response = aws.client("events").put_events(Entries=pending)
            if not response.get("FailedEntryCount"):
                return
            results = response["Entries"]
            pending = [entry for entry, result in zip(pending, results, strict=True) if result.get("ErrorCode")]
            time.sleep(0.05 * 2**round_)
        raise PublishError(f"{len(pending)} events still failing after {MAX_ROUNDS} attempts")
