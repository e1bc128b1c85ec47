"""boto3 clients, created lazily and cached per process (honours AWS_ENDPOINT_URL locally)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3

    return boto3.client(service)


@cache
def table(name: str) -> Any:
    import boto3

    return boto3.resource("dynamodb").Table(name)


def reset_clients() -> None:
    """Tests call this when they switch the mocked account or endpoint."""
    client.cache_clear()
    table.cache_clear()
