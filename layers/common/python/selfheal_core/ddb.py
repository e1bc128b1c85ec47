"""Small helpers for DynamoDB: its number type (Decimal in, float out), reads of several items."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from . import aws

MAX_BATCH_KEYS = 100
MAX_READ_ROUNDS = 5


def to_item(value: Any) -> Any:
    """JSON-shaped data -> DynamoDB-safe (floats become Decimal, None dropped from maps)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def typed(values: dict[str, Any]) -> dict[str, Any]:
    """Resource-style values (plain Python, Decimal) in the low-level client's typed shape."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in values.items()}


def typed_operation(operation: dict[str, Any]) -> dict[str, Any]:
    """A transaction operation ({"Put": {...}}, {"Update": {...}}) written with resource-style values,
    in the client's typed shape."""
    ((kind, spec),) = operation.items()
    spec = dict(spec)
    for field in ("Key", "Item", "ExpressionAttributeValues"):
        if field in spec:
            spec[field] = typed(spec[field])
    return {kind: spec}


def from_item(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    return value


def get_items(table_name: str, keys: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(pk, sk) -> item for the keys found, read consistently with one BatchGetItem per 100 keys
    (one call where several GetItem would be). Unprocessed keys are read again; raises if any
    remain after MAX_READ_ROUNDS, so no caller mistakes an unread item for a missing one."""
    client = aws.table(table_name).meta.client  # a resource's client: plain Python values
    found: dict[tuple[str, str], dict[str, Any]] = {}
    unique = list({(k["pk"], k["sk"]): k for k in keys}.values())
    for start in range(0, len(unique), MAX_BATCH_KEYS):
        request: dict[str, Any] = {table_name: {"Keys": unique[start : start + MAX_BATCH_KEYS], "ConsistentRead": True}}
        for round_ in range(MAX_READ_ROUNDS):
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table_name, []):
                found[(item["pk"], item["sk"])] = from_item(item)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**round_)
        if request:
            raise RuntimeError(f"BatchGetItem on {table_name} left keys unread after {MAX_READ_ROUNDS} rounds")
    return found
