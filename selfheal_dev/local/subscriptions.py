"""CloudWatch Logs subscription filters with Lambda destinations, as the platform delivers them.

The template's `AWS::Logs::SubscriptionFilter` resources are kept here rather than in moto
(moto would try to run the destination in its own Lambda backend). When the runtime flushes a
log group's buffered lines, the lines that match a filter's pattern are delivered to the
destination function's worker pool as one asynchronous invocation per batch, in the shape
CloudWatch Logs uses:

    {"awslogs": {"data": base64(gzip({"messageType": "DATA_MESSAGE", "owner": ..., "logGroup": ...,
      "logStream": ..., "subscriptionFilters": [...], "logEvents": [{"id", "timestamp", "message"}]}))}}

A failed delivery is retried twice like any asynchronous invocation, then goes to the
function's on-failure queue (its EventInvokeConfig), when it has one.

Filter patterns: the text syntax (terms and "quoted phrases" that must all appear, `-term`
to exclude, `?term` alternatives) and the empty pattern (every line). JSON (`{ ... }`) and
space-delimited (`[ ... ]`) patterns are not emulated: such a filter delivers nothing and
is reported at start.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .assembly import ACCOUNT, Assembly
from .functions import FunctionPool, Invocation

_TERM = re.compile(r'(?P<prefix>[?-]?)(?:"(?P<phrase>[^"]*)"|(?P<word>\S+))')


@dataclass(frozen=True)
class TextPattern:
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    supported: bool = True

    @classmethod
    def parse(cls, pattern: str) -> TextPattern:
        text = (pattern or "").strip()
        if text.startswith(("{", "[")):
            return cls(supported=False)
        required: list[str] = []
        excluded: list[str] = []
        any_of: list[str] = []
        for match in _TERM.finditer(text):
            term = match.group("phrase") if match.group("phrase") is not None else match.group("word")
            {"-": excluded, "?": any_of}.get(match.group("prefix"), required).append(term)
        return cls(tuple(required), tuple(excluded), tuple(any_of))

    def matches(self, message: str) -> bool:
        if not self.supported:
            return False
        if any(term not in message for term in self.required) or any(term in message for term in self.excluded):
            return False
        return not self.any_of or any(term in message for term in self.any_of)


@dataclass(frozen=True)
class SubscriptionFilter:
    name: str
    log_group: str
    pattern: TextPattern
    function: str  # destination function name


class SubscriptionRouter:
    def __init__(self, assembly: Assembly, pools: dict[str, FunctionPool], log: Callable[[str], None]) -> None:
        self.pools = pools
        self.log = log
        self.filters: dict[str, list[SubscriptionFilter]] = {}
        self.on_failure: dict[str, str] = {}
        self.delivered = 0
        for res in assembly.of_type("AWS::Lambda::EventInvokeConfig"):
            destination = ((res.properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            if destination:
                self.on_failure[str(res.properties.get("FunctionName", "")).split(":")[-1]] = str(destination)
        for res in assembly.of_type("AWS::Logs::SubscriptionFilter"):
            p = res.properties
            arn = str(p.get("DestinationArn", ""))
            parts = arn.split(":")
            if len(parts) < 7 or parts[2] != "lambda":
                log(f"subscription filter {res.key}: destination {arn!r} is not a Lambda function (not emulated)")
                continue
            pattern = TextPattern.parse(str(p.get("FilterPattern", "")))
            if not pattern.supported:
                log(
                    f"subscription filter {res.key}: pattern {p.get('FilterPattern')!r} is not emulated; nothing delivered"
                )
            group = str(p.get("LogGroupName", ""))
            name = str(p.get("FilterName") or res.physical_id)
            self.filters.setdefault(group, []).append(SubscriptionFilter(name, group, pattern, parts[6]))

    def subscribed(self, log_group: str) -> bool:
        return log_group in self.filters

    def public(self) -> list[dict[str, str]]:
        return [
            {"name": f.name, "log_group": f.log_group, "destination": f.function}
            for filters in self.filters.values()
            for f in filters
        ]

    def deliver(self, log_group: str, log_stream: str, events: list[dict[str, Any]]) -> int:
        """Deliver the matching lines of one flushed batch; returns the number of invocations queued."""
        queued = 0
        for subscription in self.filters.get(log_group, []):
            matching = [e for e in events if subscription.pattern.matches(str(e.get("message", "")))]
            pool = self.pools.get(subscription.function)
            if not matching or pool is None:
                continue
            payload = {
                "messageType": "DATA_MESSAGE",
                "owner": ACCOUNT,
                "logGroup": log_group,
                "logStream": log_stream,
                "subscriptionFilters": [subscription.name],
                "logEvents": [
                    {"id": _event_id(e["timestamp"]), "timestamp": e["timestamp"], "message": e["message"]}
                    for e in matching
                ],
            }
            pool.submit(
                Invocation(
                    event=encode(payload),
                    source=f"logs:{log_group}",
                    max_retries=2,
                    target_arn=pool.spec.arn,
                    dead_letter_arn=self.on_failure.get(pool.spec.name),
                )
            )
            queued += 1
        self.delivered += queued
        return queued


def encode(payload: dict[str, Any]) -> dict[str, Any]:
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


def _event_id(timestamp: int) -> str:
    # CloudWatch Logs event ids are 56-digit strings; ours only need to be unique.
    return f"{timestamp:020d}{int(secrets.token_hex(8), 16):036d}"[:56]
