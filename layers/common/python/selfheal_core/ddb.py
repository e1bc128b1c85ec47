"""Small helpers for DynamoDB's number type (Decimal in, float out)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def to_item(value: Any) -> Any:
    """JSON-shaped data -> DynamoDB-safe (floats become Decimal, None dropped from maps)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def from_item(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    return value
