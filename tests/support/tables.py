"""Tables as the DataStack defines them, for moto: pk/sk + gsi1/gsi2 (projection ALL), idempotency on `id`."""

from __future__ import annotations

import boto3


def _keyed_table(name: str) -> None:
    attributes = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": f"{index}pk", "KeyType": "HASH"},
                              {"AttributeName": f"{index}sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in ("gsi1", "gsi2")
        ],
    )


def create_tables(decisions_name: str, monitoring_name: str, idempotency_name: str) -> None:
    """Call inside `mock_aws()` (or against the local emulator)."""
    _keyed_table(decisions_name)
    _keyed_table(monitoring_name)
    boto3.client("dynamodb").create_table(
        TableName=idempotency_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
