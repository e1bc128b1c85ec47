"""Fixes to moto 5.2.5 that a long-running, concurrent emulator needs (installed by the runtime).

1. Requests are served one at a time (`REQUEST_LOCK`, taken by the runtime's WSGI layer):
   moto's backends are plain dicts and lists, not made for concurrent mutation; under a storm
   two workers' writes raced into 500s and lost updates.
2. DynamoDB TransactWriteItems backs up only the items it touches. moto deep-copies every
   table named in the transaction to roll back on failure: O(table size) per call, so a
   1,000-alarm storm slowed down quadratically, and restoring the copy also threw away any
   write made meanwhile.
3. EventBridge replays honour EventStartTime/EventEndTime (moto replays the whole archive) and,
   like EventBridge, send each archived event once, marked with `replay-name`.
4. Two lookups moto's server repeats on every request are computed once: the list of its
   service packages (`list_of_moto_modules` lists and stats moto's directory each time) and a
   response class's method names (`inspect.getmembers`). Together they were ~28 % of the
   emulator's request time; their answers cannot change while the process runs (every patch
   of a response class is installed before the server starts).
5. DynamoDB attribute values are serialized without moto's attribute picker. moto serializes
   every response from the botocore model, and for each node of an item it tries the ten
   members of `AttributeValue` under six alias rules each: a GetItem of an incident took
   ~25 ms. An `AttributeValue` given as the plain dict moto builds ({"S": ...}, {"M": {...}})
   holds its members under their own names, which is the alias the picker would find; the
   members are still serialized by moto's own code, so the JSON is the same.
6. A DynamoDB update expression is parsed once per distinct string (moto parsed it twice per
   UpdateItem, in the handler and the backend). The parsed tree is only read: moto's validator
   works on a deep copy of it.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

REQUEST_LOCK = threading.RLock()
_installed = False


class _NoTableCopy:
    """Stands in for the `copy` module inside moto.dynamodb.models during a transaction."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value  # rollback is done per item below
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items
    shim = _NoTableCopy(Table)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with REQUEST_LOCK:
            backups: list[tuple[Any, Any, Any, Any]] = []
            for entry in transact_items:
                op_type, op = next(iter(entry.items()))
                table = self.tables.get(op.get("TableName"))
                if table is None:
                    continue
                key = op.get("Key")
                if op_type == "Put":
                    attrs = op.get("Item", {})
                    key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
                    if table.range_key_attr:
                        key[table.range_key_attr] = attrs.get(table.range_key_attr)
                if not key or any(v is None for v in key.values()):
                    continue
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                current = table.get_item(hash_key, range_key)
                backups.append((table, hash_key, range_key, copy.deepcopy(current)))
            ddb_models.copy = shim  # type: ignore[assignment]  # moto's module patched for this call only
            try:
                return original(self, transact_items)
            except Exception:
                for table, hash_key, range_key, item in reversed(backups):
                    if item is None:
                        table.delete_item(hash_key, range_key)
                    else:
                        table.put_item(item.to_json()["Attributes"])
                raise
            finally:
                ddb_models.copy = copy  # type: ignore[attr-defined]

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _install_replay_window()
    _install_dispatch_caches()
    _install_attribute_value_fast_path()
    _install_item_size_check_once()
    _installed = True


def _install_item_size_check_once() -> None:
    """moto builds an item attribute by attribute and re-sums the whole item's size (recursively)
    at each one: quadratic in attributes, and most of a write's time for an incident item. Build
    it, then check the total once: the same 400 KB limit and the same error (sizes only grow as
    attributes are added, so the last check was the one that could fail)."""
    from moto.dynamodb.models import dynamo_type

    def build(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key, self.range_key = hash_key, range_key
        values = {key: dynamo_type.DynamoType(value) for key, value in attrs.items()}
        if sum(dynamo_type.bytesize(key) + value.size() for key, value in values.items()) > 405_000:
            raise dynamo_type.ItemSizeTooLarge
        self.attrs = dynamo_type.LimitedSizeDict(values)  # dict.update: no per-key re-summing

    dynamo_type.Item.__init__ = build  # type: ignore[method-assign]


def _install_dispatch_caches() -> None:
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]  # read by the dispatcher per request
    names = functools.cache(responses.method_names_from_class)
    responses.method_names_from_class = lambda clazz: list(names(clazz))  # type: ignore[assignment]

    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]  # untyped in the stubs mypy sees

    parse = functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make)  # agents use a few fixed expressions
    UpdateExpressionParser.make = staticmethod(parse)  # type: ignore[method-assign,assignment]


def _install_attribute_value_fast_path() -> None:
    from moto.core.serialize import BaseJSONSerializer

    generic = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and type(value) is dict
            and self.operation_model.service_model.service_name in ("dynamodb", "dynamodbstreams")
            and value.keys() <= shape.members.keys()  # any other key: the picker's aliases might apply
        ):
            wrapper = self.MAP_TYPE()
            for member_key, member_shape in shape.members.items():
                member = value.get(member_key)
                if member is not None:
                    member_shape.parent = shape
                    self._serialize(wrapper, member, member_shape, member_key)
            self._default_serialize(serialized, wrapper, shape, key)
            return
        generic(self, serialized, value, shape, key)

    serialize_structure.__wrapped__ = generic  # type: ignore[attr-defined]  # what tests compare with
    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def _install_replay_window() -> None:
    import uuid
    from datetime import datetime

    from moto.core.utils import unix_time
    from moto.events.models import Replay, ReplayState, events_backends

    def epoch(value: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()

    def replay_events(self: Any, archive: Any) -> None:
        start, end = epoch(self.event_start_time), epoch(self.event_end_time)
        bus_name = self.destination["Arn"].split("/")[-1]
        bus = events_backends[self.account_id][self.region].describe_event_bus(bus_name)
        for event in list(archive.events):
            if not start <= epoch(event.get("time", 0)) < end:
                continue
            replayed = {**event, "id": str(uuid.uuid4()), "replay-name": self.name}
            for rule in list(bus.rules.values()):
                rule.send_to_targets(cast("EventMessageType", replayed), transform_input=False)
        self.state = ReplayState.COMPLETED
        self.end_time = unix_time()

    Replay.replay_events = replay_events  # type: ignore[method-assign]
