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


def _item(table: Any, pk: str) -> dict[str, Any] | None:
    return table.get_item(TableName="t", Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def test_a_cancelled_transaction_leaves_every_item_as_it_was(table: Any) -> None:
    # Given a transaction that updates and replaces items, then fails its last condition
    from botocore.exceptions import ClientError

    table.put_item(TableName="t", Item={"pk": {"S": "other"}, "n": {"N": "1"}})
    with pytest.raises(ClientError, match="TransactionCanceled"):
        table.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "inc-1"}},
                        "UpdateExpression": "SET history[0].#st = :s ADD #c :one",
                        "ExpressionAttributeNames": {"#c": "count", "#st": "status"},
                        "ExpressionAttributeValues": {":s": {"S": "CHANGED"}, ":one": {"N": "1"}},
                    }
                },
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "other"}, "n": {"N": "2"}}}},
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}},
                {
                    "Delete": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "nope"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    # Then nothing of it was applied, nested values included
    assert _item(table, "inc-1") == RICH_ITEM
    assert _item(table, "other") == {"pk": {"S": "other"}, "n": {"N": "1"}}
    assert _item(table, "new") is None


def test_a_failed_update_changes_nothing_and_a_good_one_returns_its_values(table: Any) -> None:
    from botocore.exceptions import ClientError

    # Given an update whose second action fails (ADD to a string) after its first one (SET) ran
    with pytest.raises(ClientError, match="ValidationException"):
        table.update_item(
            TableName="t",
            Key={"pk": {"S": "inc-1"}},
            UpdateExpression="SET history[0].#st = :s ADD #e :one",
            ExpressionAttributeNames={"#e": "empty", "#st": "status"},
            ExpressionAttributeValues={":s": {"S": "CHANGED"}, ":one": {"N": "1"}},
        )
    # Then the item is unchanged
    assert _item(table, "inc-1") == RICH_ITEM
    # And an update that passes returns the values before and after it, as asked
    update = {
        "TableName": "t",
        "Key": {"pk": {"S": "inc-1"}},
        "UpdateExpression": "SET history[0].#st = :s ADD #c :one",
        "ExpressionAttributeNames": {"#c": "count", "#st": "status"},
        "ExpressionAttributeValues": {":s": {"S": "FIXING"}, ":one": {"N": "1"}},
    }
    old = table.update_item(**update, ReturnValues="UPDATED_OLD")["Attributes"]
    assert old["count"] == {"N": "42"}
    assert old["history"]["L"][0]["M"]["status"] == {"S": "OPEN"}
    assert table.update_item(**update, ReturnValues="UPDATED_NEW")["Attributes"]["count"] == {"N": "44"}
    after = _item(table, "inc-1")
    assert after is not None and after["history"]["L"][0]["M"]["status"] == {"S": "FIXING"}
    assert after["history"]["L"][1:] == RICH_ITEM["history"]["L"][1:]


def test_an_update_that_would_outgrow_the_size_limit_is_refused_whole(table: Any) -> None:
    from botocore.exceptions import ClientError

    # Given an item of about 300 KB and an update that adds 150 KB, partly nested
    table.put_item(TableName="t", Item={"pk": {"S": "big"}, "a": {"S": "x" * 300_000}, "m": {"M": {}}})
    with pytest.raises(ClientError, match="size"):
        table.update_item(
            TableName="t",
            Key={"pk": {"S": "big"}},
            UpdateExpression="SET b = :small, m.part = :large",
            ExpressionAttributeValues={":small": {"S": "y"}, ":large": {"S": "z" * 150_000}},
        )
    # Then it is unchanged
    assert _item(table, "big") == {"pk": {"S": "big"}, "a": {"S": "x" * 300_000}, "m": {"M": {}}}


def test_an_invalid_update_expression_is_refused_every_time(table: Any) -> None:
    from botocore.exceptions import ClientError

    # Given an expression whose structure checks passed once (with other attribute names)...
    update = {"TableName": "t", "Key": {"pk": {"S": "inc-1"}}, "UpdateExpression": "SET #a = :v, #b = :v"}
    table.update_item(
        **update, ExpressionAttributeNames={"#a": "x", "#b": "y"}, ExpressionAttributeValues={":v": {"N": "1"}}
    )
    # When the same string comes with names that make its paths overlap, or twice with two SET clauses
    for _ in range(2):
        with pytest.raises(ClientError, match="overlap"):
            table.update_item(
                **update, ExpressionAttributeNames={"#a": "x", "#b": "x"}, ExpressionAttributeValues={":v": {"N": "1"}}
            )
        with pytest.raises(ClientError, match="SET"):
            table.update_item(
                TableName="t",
                Key={"pk": {"S": "inc-1"}},
                UpdateExpression="SET a = :v SET b = :v",
                ExpressionAttributeValues={":v": {"N": "1"}},
            )
    # Then the key attribute cannot be set either, whichever expression passed before
    with pytest.raises(ClientError, match="key"):
        table.update_item(
            **update, ExpressionAttributeNames={"#a": "pk", "#b": "y"}, ExpressionAttributeValues={":v": {"S": "k"}}
        )
