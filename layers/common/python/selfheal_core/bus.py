"""Publish envelopes to the agents bus: requests of at most 10 entries and 256 KB, entries that
fail transiently are retried."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from . import aws
from .events import Metadata, build_detail

# PutEvents' limits: 10 entries, and 256 KB for all of a request's entries together (entry_size);
# a request over the size limit fails as a whole (ValidationException).
MAX_BATCH = 10
MAX_REQUEST_BYTES = 256 * 1024
MAX_ROUNDS = 4
TOO_LARGE = "EntryTooLarge"


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
        size = entry_size(entry)
        if size > MAX_REQUEST_BYTES:
            # Never send: large content belongs in the artifacts store (claim check).
            raise PublishError(f"{message.detail_type} is {size} bytes; move content to an artifact reference")
        return entry

    def publish(self, *messages: Outgoing) -> None:
        result = put_entries([self.entry(m) for m in messages])
        if result.failed:
            raise PublishError(f"{len(result.failed)} events not sent: {result.failed[0]['error_message']}")


def entry_size(entry: dict[str, Any]) -> int:
    """EventBridge's size of a PutEvents entry: Time counts 14 bytes; Source, DetailType, Detail
    and each of the Resources their UTF-8 bytes (the bus name does not count)."""
    size = 14 if entry.get("Time") is not None else 0
    size += sum(len(str(entry.get(key) or "").encode()) for key in ("Source", "DetailType", "Detail"))
    return size + sum(len(str(r).encode()) for r in entry.get("Resources") or [] if r is not None)


def requests(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The entries in order, cut into the requests PutEvents accepts (10 entries, 256 KB)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = entry_size(entry)
        if batch and (len(batch) == MAX_BATCH or size + n > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield batch


# PutEvents reports an entry's error code per entry; the transient ones (aws.TRANSIENT_ERRORS)
# pass on their own. Anything else (AccessDenied, a malformed entry) fails the same way every time.
TRANSIENT_ERRORS = aws.TRANSIENT_ERRORS


@dataclass(frozen=True)
class PutResult:
    event_ids: list[str]
    failed: list[dict[str, Any]]  # {"error_code", "error_message"} per entry not sent


def put_entries(entries: list[dict[str, Any]], client: Any = None) -> PutResult:
    """PutEvents in the requests it accepts (see `requests`); entries that fail transiently are
    sent again (4 rounds, backing off), the others are reported, as is an entry over 256 KB,
    which is never sent (it would fail its whole request). `client` defaults to this process's
    events client."""
    events = client or aws.client("events")
    ids: list[str] = []
    failed: list[dict[str, Any]] = []
    sendable = []
    for entry in entries:
        size = entry_size(entry)
        if size > MAX_REQUEST_BYTES:
            failed.append(
                {
                    "error_code": TOO_LARGE,
                    "error_message": f"entry is {size} bytes; PutEvents takes {MAX_REQUEST_BYTES}",
                }
            )
        else:
            sendable.append(entry)
    for pending in requests(sendable):
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
