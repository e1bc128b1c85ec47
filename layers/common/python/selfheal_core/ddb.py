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
    """(pk, sk) -> item for the keys of one table found (see `read_items`)."""
    return {(pk, sk): item for (_, pk, sk), item in read_items({table_name: keys}).items()}


def read_items(keys_by_table: dict[str, list[dict[str, str]]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(table, pk, sk) -> item for the keys found, of one or more tables, read consistently with
    one BatchGetItem per 100 keys (one call where several GetItem would be). Unprocessed keys are
    read again; raises if any remain after MAX_READ_ROUNDS, so no caller mistakes an unread item
    for a missing one."""
    unique = list({(t, k["pk"], k["sk"]): (t, k) for t, keys in keys_by_table.items() for k in keys}.values())
    if not unique:
        return {}
    client = aws.table(unique[0][0]).meta.client  # a resource's client: plain Python values
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for start in range(0, len(unique), MAX_BATCH_KEYS):
        request: dict[str, Any] = {}
        for table, key in unique[start : start + MAX_BATCH_KEYS]:
            request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
        for round_ in range(MAX_READ_ROUNDS):
            response = client.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                for item in items:
                    found[(table, item["pk"], item["sk"])] = from_item(item)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**round_)
        if request:
            raise RuntimeError(f"BatchGetItem on {sorted(request)} left keys unread after {MAX_READ_ROUNDS} rounds")
    return found
