"""Reads over both tables: paged queries and an incident's timeline (keys.py pattern 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from selfheal_core import aws, keys
from selfheal_core.ddb import from_item

_KEY_ATTRIBUTES = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "ttl")
_ORDER = {"decision": 0, "event": 1, "message": 2, "cost": 3}  # same millisecond: why before what it cost


def query_all(table_name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a Query, following LastEvaluatedKey; numbers come back as int/float."""
    table = aws.table(table_name)
    while True:
        page = table.query(**kwargs)
        for item in page["Items"]:
            yield from_item(item)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def timeline(incident_id: str, *, decisions_table: str, monitoring_table: str) -> list[dict[str, Any]]:
    """Decisions, events, messages and costs of one incident, oldest first (one query per table)."""
    from boto3.dynamodb.conditions import Key

    pk = keys.incident_pk(incident_id)
    entries = [
        *query_all(decisions_table, KeyConditionExpression=Key("pk").eq(pk) & Key("sk").begins_with("DECISION#")),
        *query_all(monitoring_table, KeyConditionExpression=Key("pk").eq(pk)),
    ]
    entries.sort(key=lambda e: (e.get("created_at", ""), _ORDER.get(e.get("record_type", ""), 9), e["sk"]))
    return [_entry(e) for e in entries]


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """`kind` says what the entry is (decision, event, message, cost); a cost's own kind is `cost_kind`."""
    fields = {k: v for k, v in item.items() if k not in _KEY_ATTRIBUTES}
    if "kind" in fields:
        fields["cost_kind"] = fields.pop("kind")
    return {"kind": item.get("record_type", "unknown"), "at": item.get("created_at"), **fields}
