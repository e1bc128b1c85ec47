"""DynamoDB applies each request atomically; moto's in-process backend does not under threads.

Concurrency tests patch the backend to serialize requests, so what they test is our
conditions and transactions, not moto's locking.
"""

from __future__ import annotations

import threading

from moto.dynamodb.models import DynamoDBBackend

OPERATIONS = ("update_item", "put_item", "get_item", "delete_item", "query", "transact_write_items")


def make_dynamodb_requests_atomic(monkeypatch) -> None:
    lock = threading.RLock()
    for name in OPERATIONS:
        original = getattr(DynamoDBBackend, name)

        def atomic(self, *args, _original=original, **kwargs):
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)
