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

import contextlib
import copy
import functools
import pickle
import threading
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

REQUEST_LOCK = threading.RLock()
ITEM_SIZE_LIMIT = 405_000  # moto's figure for DynamoDB's 400 KB (measured between 409 and 410 KB)
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
            # The items as they were, by reference: no write of the transaction changes a stored
            # item in place (a Put or Delete replaces it, an Update works on a copy: see below).
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
                backups.append((table, hash_key, range_key, table.get_item(hash_key, range_key)))
            ddb_models.copy = shim  # type: ignore[assignment]  # moto's module patched for this call only
            try:
                return original(self, transact_items)
            except Exception:
                for table, hash_key, range_key, item in reversed(backups):
                    _store(table, hash_key, range_key, item)
                raise
            finally:
                ddb_models.copy = copy  # type: ignore[attr-defined]

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _install_replay_window()
    _install_dispatch_caches()
    _install_attribute_value_fast_path()
    _install_item_size_check_once()
    _install_copy_on_write_update()
    _install_update_validation_cache()
    _installed = True


def _store(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Put `item` (or no item, for None) under its key in moto's table, as it was: no write
    checks, no stream record (what rolling back and restoring need)."""
    if table.range_key_attr:
        if item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


class _BeforeImage:
    """Stands in for the `copy` module inside moto.dynamodb.models during one UpdateItem: the
    copy moto takes of the item before updating it (for its stream record) is the stored item
    itself, which the update leaves unchanged."""

    def __init__(self, module: Any, working: Any, before: Any) -> None:
        self._module, self._working, self._before = module, working, before

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if value is self._working:
            return self._before
        return self._module.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _UncheckedAttrs(dict):  # type: ignore[type-arg]
    """An updated item's attributes while the update runs: the size is checked once at the end."""


def _install_copy_on_write_update() -> None:
    """UpdateItem works on a copy of the stored item, put in its place, and puts the original
    back when the update fails. moto updates the stored item in place, after deep-copying it
    for its stream record (even for a table without a stream), and re-sums the whole item's size
    at each attribute it sets (quadratic; most of an update of an incident item); a failing
    update (an attribute that does not exist, the size limit) could leave it half-applied.

    Now: one copy per update; the item is checked against the 400 KB limit once, as it will be
    stored (DynamoDB's rule: the updated item must fit; moto's per-attribute check also missed
    nested SETs); nothing changes when the update fails; and since no write changes a stored item
    in place any more, a transaction's rollback can keep the items it replaces by reference."""
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    original = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        with REQUEST_LOCK:
            table = self.get_table(table_name)
            if table.hash_key_attr not in key or (table.range_key_attr and table.range_key_attr not in key):
                return original(self, table_name, key, *args, **kwargs)  # moto's own error for the key
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            current = table.get_item(hash_key, range_key)
            if current is None:  # a new item: moto stores the key first, then updates it
                try:
                    return original(self, table_name, key, *args, **kwargs)
                except Exception:
                    _store(table, hash_key, range_key, None)
                    raise
            working = copy.deepcopy(current)
            working.attrs = _UncheckedAttrs(working.attrs)
            _store(table, hash_key, range_key, working)
            module = ddb_models.copy
            ddb_models.copy = _BeforeImage(module, working, current)  # type: ignore[assignment]
            try:
                updated = original(self, table_name, key, *args, **kwargs)
                if working.size() > ITEM_SIZE_LIMIT:
                    raise ItemSizeToUpdateTooLarge()
                return updated
            except Exception:
                _store(table, hash_key, range_key, current)
                raise
            finally:
                ddb_models.copy = module  # type: ignore[assignment]
                working.attrs = LimitedSizeDict(working.attrs)  # dict.update: no per-key re-summing

    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]


def _install_update_validation_cache() -> None:
    """Two of moto's ten checks of an update expression depend on nothing but the expression
    (at most one SET/ADD/REMOVE/DELETE clause each; no overlapping paths, given the attribute
    names) and a third also on the table's key attributes; moto runs them, on every UpdateItem,
    over every node of the expression's tree, the first two at every level (quadratic). They
    now run until they have passed once for the (parsed, cached) expression, its names and the
    table's keys; the checks of values and of the item still run every time. Also: moto's tree
    walkers rebuilt their node-type table at every node; it is built once per walk. And the
    validator's private copy of the tree is unpickled from a pickle taken once per expression."""
    from moto.dynamodb.parsing import ast_nodes, validators

    static = (
        validators.ActionCountValidator,
        validators.OverlappingPathsValidator,
        validators.UpdateHashRangeKeyValidator,
    )
    passed: dict[tuple[Any, ...], Any] = {}  # key -> the expression (kept alive, so its id stays its own)
    pickled: dict[int, tuple[Any, bytes]] = {}  # id -> the expression and its pickle

    def tree_copy(value: Any, memo: Any = None) -> Any:
        """The validator's own copy of the expression tree: unpickled (6x faster than deepcopy)."""
        entry = pickled.get(id(value))
        if entry is not None and entry[0] is value:
            return pickle.loads(entry[1])  # noqa: S301 - our own pickle of moto's parse tree
        return copy.deepcopy(value, memo)

    validators.deepcopy = tree_copy  # type: ignore[attr-defined,assignment]
    init, validate = validators.UpdateExpressionValidator.__init__, validators.UpdateExpressionValidator.validate

    def key_of(expression: Any, names: Any, table: Any) -> tuple[Any, ...]:
        return (id(expression), tuple(sorted((names or {}).items())), tuple(table.table_key_attrs))

    def validator_init(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        if pickled.get(id(expression), (None,))[0] is not expression:
            if len(pickled) >= 4096:
                pickled.clear()
            with contextlib.suppress(Exception):  # not picklable: moto's deepcopy below
                pickled[id(expression)] = (expression, pickle.dumps(expression, pickle.HIGHEST_PROTOCOL))
        init(self, expression, *args, **kwargs)
        self._selfheal_key = key_of(expression, self.expression_attribute_names, self.table)
        self._selfheal_expression = expression
        if passed.get(self._selfheal_key) is expression:
            self.processors = [p for p in self.processors if not isinstance(p, static)]

    def validator_validate(self: Any) -> Any:
        node = validate(self)
        if len(passed) >= 4096:
            passed.clear()
        passed[self._selfheal_key] = self._selfheal_expression
        return node

    validators.UpdateExpressionValidator.__init__ = validator_init  # type: ignore[method-assign]
    validators.UpdateExpressionValidator.validate = validator_validate  # type: ignore[method-assign]

    traverser = ast_nodes.DepthFirstTraverser  # type: ignore[attr-defined]
    generic_types, generic_process = traverser.nodes_to_be_processed, traverser.process

    def processing_map(walker: Any) -> dict[type, Any]:
        table = walker.__dict__.get("_selfheal_map")
        if table is None:
            table = walker._selfheal_map = walker._processing_map()
        return table  # type: ignore[no-any-return]

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        types = self.__dict__.get("_selfheal_types")
        if types is None:
            types = self._selfheal_types = tuple(processing_map(self))
        return types  # type: ignore[no-any-return]

    def process(self: Any, node: Any) -> Any:
        for class_key, processor in processing_map(self).items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    nodes_to_be_processed.__wrapped__ = generic_types  # type: ignore[attr-defined]
    process.__wrapped__ = generic_process  # type: ignore[attr-defined]
    traverser.nodes_to_be_processed = nodes_to_be_processed  # type: ignore[method-assign]
    traverser.process = process  # type: ignore[method-assign]


def _install_item_size_check_once() -> None:
    """moto builds an item attribute by attribute and re-sums the whole item's size (recursively)
    at each one: quadratic in attributes, and most of a write's time for an incident item. Build
    it, then check the total once: the same 400 KB limit and the same error (sizes only grow as
    attributes are added, so the last check was the one that could fail)."""
    from moto.dynamodb.models import dynamo_type

    def build(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key, self.range_key = hash_key, range_key
        values = {key: dynamo_type.DynamoType(value) for key, value in attrs.items()}
        if sum(dynamo_type.bytesize(key) + value.size() for key, value in values.items()) > ITEM_SIZE_LIMIT:
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
