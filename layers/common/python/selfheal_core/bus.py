"""Publish envelopes to the agents bus: batches of 10, entries that fail transiently are retried."""

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
        result = put_entries(batch)
        if result.failed:
            raise PublishError(f"{len(result.failed)} events still failing after {MAX_ROUNDS} attempts")


# PutEvents reports these per entry; they pass on their own. Anything else (AccessDenied,
# a malformed entry) fails the same way every time.
TRANSIENT_ERRORS = frozenset({"ThrottlingException", "InternalException", "InternalFailure"})


@dataclass(frozen=True)
class PutResult:
    event_ids: list[str]
    failed: list[dict[str, Any]]  # {"error_code", "error_message"} per entry not sent


def put_entries(entries: list[dict[str, Any]], client: Any = None) -> PutResult:
    """PutEvents in batches of 10; entries that fail transiently are sent again (4 rounds,
    backing off), the others are reported. `client` defaults to this process's events client."""
    events = client or aws.client("events")
    ids: list[str] = []
    failed: list[dict[str, Any]] = []
    for start in range(0, len(entries), MAX_BATCH):
        pending = entries[start : start + MAX_BATCH]
        for round_ in range(MAX_ROUNDS):
            response = events.put_events(Entries=pending)
            retry = []
            for entry, result in zip(pending, response["Entries"], strict=True):
                if result.get("EventId"):
                    ids.append(result["EventId"])
                elif result.get("ErrorCode") in TRANSIENT_ERRORS:
                    retry.append(entry)
                else:
                    failed.append({"error_code": result.get("ErrorCode"), "error_message": result.get("ErrorMessage")})
            pending = retry
            if not pending:
                break
            time.sleep(0.05 * 2**round_)
        failed.extend(
            {"error_code": "Throttled", "error_message": f"gave up after {MAX_ROUNDS} rounds"} for _ in pending
        )
    return PutResult(ids, failed)
