"""boto3 clients, created lazily and cached per process (honours AWS_ENDPOINT_URL locally)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    import boto3

    return boto3.client(service)


@lru_cache(maxsize=None)
def table(name: str) -> Any:
    import boto3

    return boto3.resource("dynamodb").Table(name)


def reset_clients() -> None:
    """Tests call this when they switch the mocked account or endpoint."""
    client.cache_clear()
    table.cache_clear()
