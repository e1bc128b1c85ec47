"""Events refused as invalid are kept, with the reason, where an operator can list them."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import aws, keys
from .ddb import from_item, typed_operation
from .events import utc_now
from .redact import scrub

RAW_CAP_CHARS = 8_000
RETENTION_DAYS = 30


def _raw(event: Any) -> str:
    try:
        return json.dumps(event, default=str)
    except (RecursionError, ValueError):  # nested too deeply to serialise: keep what identifies it
        keys = sorted(str(k)[:64] for k in event) if isinstance(event, dict) else []
        return json.dumps({"unserialisable": "nested too deeply", "top_level_keys": keys[:20]})


def delivery_key(event: Any, agent: str) -> str:
    """What identifies one refused delivery to one agent: the event without its id and `replay-name`.
    A Lambda retry has the same id, an EventBridge replay a new id: both are the same event, which
    an operator must see listed once, not once per delivery."""
    same = {k: v for k, v in event.items() if k not in ("id", "replay-name")} if isinstance(event, dict) else event
    try:
        basis = json.dumps(same, sort_keys=True, default=str)
    except (RecursionError, ValueError):  # nested too deeply to serialise: its id is all there is
        basis = f"unserialisable|{event.get('id', '') if isinstance(event, dict) else ''}"
    return hashlib.sha256(f"{agent}|{basis}".encode()).hexdigest()[:32]


class RejectionLog:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def record(self, *, reason: str, event: Any, agent: str) -> dict[str, Any]:
        now = utc_now()
        raw = scrub(_raw(event))
        reason = scrub(reason)
        field = (lambda name: str(event.get(name, ""))[:256]) if isinstance(event, dict) else (lambda _name: "")
        item = {
            "pk": f"REJECTED#{keys.day_of(now)}",
            "sk": f"{now}#{keys.uid()}",
            "reason": reason[:2_000],
            "agent": agent,
            "detail_type": field("detail-type"),
            "source": field("source"),
            "event_id": field("id"),
            "raw": raw[:RAW_CAP_CHARS],
            "truncated": len(raw) > RAW_CAP_CHARS,
            "rejected_at": now,
            "ttl": int(time.time()) + RETENTION_DAYS * 86_400,
        }
        # The listed item and a marker of the delivery in one transaction: a refused event that
        # comes again (retry, replay) finds the marker and is not listed a second time.
        marker = {"pk": f"REJECTED-DELIVERY#{delivery_key(event, agent)}", "sk": "-", "ttl": item["ttl"]}
        try:
            aws.client("dynamodb").transact_write_items(
                TransactItems=[
                    typed_operation(
                        {
                            "Put": {
                                "TableName": self.table_name,
                                "Item": marker,
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        }
                    ),
                    typed_operation({"Put": {"TableName": self.table_name, "Item": item}}),
                ]
            )
        except aws.client("dynamodb").exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
            return {**item, "listed": False}  # already listed by an earlier delivery
        return item

    def list(self, days: int = 7, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first, every page of every day (a day can hold more than one 1 MB page)."""
        from boto3.dynamodb.types import TypeDeserializer

        deserialize = TypeDeserializer().deserialize
        paginator = aws.client("dynamodb").get_paginator("query")
        items: list[dict[str, Any]] = []
        today = datetime.now(UTC).date()
        for offset in range(days):
            day = (today - timedelta(days=offset)).isoformat()
            pages = paginator.paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"REJECTED#{day}"}},
                ScanIndexForward=False,
            )
            for page in pages:
                items.extend(from_item({k: deserialize(v) for k, v in item.items()}) for item in page["Items"])
                if limit is not None and len(items) >= limit:
                    return items[:limit]
        return items
