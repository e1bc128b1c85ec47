"""Events refused as invalid are kept, with the reason, where an operator can list them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import aws, keys
from .events import utc_now
from .redact import scrub

RAW_CAP_CHARS = 8_000
RETENTION_DAYS = 30


class RejectionLog:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def record(self, *, reason: str, event: Any, agent: str) -> dict[str, Any]:
        now = utc_now()
        raw = scrub(json.dumps(event, default=str))
        reason = scrub(reason)
        item = {
            "pk": f"REJECTED#{keys.day_of(now)}",
            "sk": f"{now}#{keys.uid()}",
            "reason": reason[:2_000],
            "agent": agent,
            "detail_type": event.get("detail-type", "") if isinstance(event, dict) else "",
            "source": event.get("source", "") if isinstance(event, dict) else "",
            "event_id": event.get("id", "") if isinstance(event, dict) else "",
            "raw": raw[:RAW_CAP_CHARS],
            "truncated": len(raw) > RAW_CAP_CHARS,
            "rejected_at": now,
            "ttl": int(time.time()) + RETENTION_DAYS * 86_400,
        }
        aws.table(self.table_name).put_item(Item=item)
        return item

    def list(self, days: int = 7) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        items: list[dict[str, Any]] = []
        today = datetime.now(UTC).date()
        for offset in range(days):
            day = (today - timedelta(days=offset)).isoformat()
            resp = aws.table(self.table_name).query(KeyConditionExpression=Key("pk").eq(f"REJECTED#{day}"), ScanIndexForward=False)
            items.extend(resp["Items"])
        return items
