"""The local runtime's moto fixes keep moto's answers: items come back exactly as written."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer

RICH_ITEM: dict[str, Any] = {
    "pk": {"S": "inc-1"},
    "empty": {"S": ""},
    "count": {"N": "42"},
    "ratio": {"N": "-0.125"},
    "blob": {"B": b"\x00\xffbytes"},
    "names": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"x", b"\x01"]},
    "nothing": {"NULL": True},
    "no": {"BOOL": False},
    "yes": {"BOOL": True},
    "history": {
        "L": [
            {"M": {"status": {"S": "OPEN"}, "at": {"N": "1"}, "flags": {"L": [{"BOOL": False}, {"NULL": True}]}}},
            {"L": []},
            {"M": {}},
        ]
    },
}


@pytest.fixture
def table() -> Any:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="t", Item=RICH_ITEM)
        yield ddb


def test_an_item_of_every_attribute_type_reads_back_as_written(table: Any) -> None:
    assert table.get_item(TableName="t", Key={"pk": {"S": "inc-1"}})["Item"] == RICH_ITEM
    assert table.scan(TableName="t")["Items"] == [RICH_ITEM]
    old = table.update_item(
        TableName="t",
        Key={"pk": {"S": "inc-1"}},
        UpdateExpression="ADD #c :one",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="ALL_OLD",
    )["Attributes"]
    assert old == RICH_ITEM


def test_the_fast_path_serializes_like_the_attribute_picker(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given moto's answer to a GetItem with the fast path installed (by tests/conftest.py)
    def raw_get() -> dict[str, Any]:
        response = table.get_item(TableName="t", Key={"pk": {"S": "inc-1"}})
        return json.loads(json.dumps(response["Item"], default=repr))

    fast = raw_get()
    # When the same item is serialized by moto's generic structure serializer
    generic = BaseJSONSerializer._serialize_type_structure.__wrapped__  # type: ignore[attr-defined]
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", generic)
    # Then both give the same item
    assert raw_get() == fast


def test_an_update_expression_used_again_applies_again(table: Any) -> None:
    # Given one expression string (parsed once, then reused), sent as an UpdateItem and in a transaction
    update = {
        "TableName": "t",
        "Key": {"pk": {"S": "inc-1"}},
        "UpdateExpression": "SET #s = :s ADD #c :one",
        "ExpressionAttributeNames": {"#s": "status", "#c": "count"},
    }
    for status in ("OPEN", "FIXING"):
        table.update_item(**update, ExpressionAttributeValues={":s": {"S": status}, ":one": {"N": "1"}})
    table.transact_write_items(
        TransactItems=[{"Update": {**update, "ExpressionAttributeValues": {":s": {"S": "DONE"}, ":one": {"N": "2"}}}}]
    )
    # Then each use applied its own values
    item = table.get_item(TableName="t", Key={"pk": {"S": "inc-1"}})["Item"]
    assert item["status"] == {"S": "DONE"}
    assert item["count"] == {"N": "46"}


def test_an_item_over_the_size_limit_is_still_refused(table: Any) -> None:
    # Given the item size check moved to the end of building an item (moto_patches)
    from botocore.exceptions import ClientError

    big = {"pk": {"S": "inc-2"}, **{f"a{i}": {"S": "x" * 50_000} for i in range(9)}}  # about 450 KB
    # When it is written, alone or in a transaction, then DynamoDB's error comes back and nothing is stored
    with pytest.raises(ClientError, match="size"):
        table.put_item(TableName="t", Item=big)
    with pytest.raises(ClientError):
        table.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": big}}])
    assert "Item" not in table.get_item(TableName="t", Key={"pk": {"S": "inc-2"}})
    # And an item just under the limit is stored whole
    under = {"pk": {"S": "inc-3"}, **{f"a{i}": {"S": "x" * 50_000} for i in range(7)}}
    table.put_item(TableName="t", Item=under)
    assert table.get_item(TableName="t", Key={"pk": {"S": "inc-3"}})["Item"] == under
