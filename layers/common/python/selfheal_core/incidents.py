"""Incident state in the decisions table. Every transition is a conditional write (docs/architecture.md, "Incident states").

A replayed or duplicated event can never move an incident backwards: `transition` only
succeeds from the statuses that may precede the target (and, when given, at the expected
attempt); otherwise it returns None and the caller drops the stale event.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from . import aws, keys
from .catalog import OPEN_STATUSES, TERMINAL, Status
from .ddb import from_item, to_item, typed
from .events import utc_now
from .redact import scrub

# target status -> statuses it may be reached from
ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    Status.REMEDIATING: frozenset({Status.DETECTED, Status.REJECTED, Status.BUDGET_PAUSED, Status.RETRY_WAIT}),
    Status.FIX_PROPOSED: frozenset({Status.REMEDIATING}),
    Status.VALIDATING: frozenset({Status.FIX_PROPOSED}),
    Status.VALIDATED: frozenset({Status.VALIDATING}),
    Status.REJECTED: frozenset({Status.VALIDATING}),
    Status.APPROVED: frozenset({Status.VALIDATED, Status.AWAITING_APPROVAL}),
    Status.AWAITING_APPROVAL: frozenset({Status.VALIDATED}),
    Status.BUDGET_PAUSED: frozenset({Status.REMEDIATING}),
    Status.RETRY_WAIT: frozenset({Status.REMEDIATING}),
    Status.FAILED: frozenset(
        {Status.DETECTED, Status.REMEDIATING, Status.REJECTED, Status.BUDGET_PAUSED, Status.RETRY_WAIT}
    ),
    Status.SCHEDULED: frozenset({Status.APPROVED}),
    Status.VERIFYING: frozenset({Status.APPROVED, Status.SCHEDULED}),
    Status.ROLLED_BACK: frozenset({Status.VERIFYING}),
    Status.PATCH_READY: frozenset({Status.APPROVED}),
    Status.ESCALATED: frozenset(OPEN_STATUSES),
    # Not while APPROVED: a change may be in flight; verification reads the alarm's state instead.
    # Not from ROLLED_BACK: a rollback always ends ESCALATED with FixRolledBack (heal._finish_rollback).
    Status.RESOLVED: frozenset(OPEN_STATUSES - {Status.APPROVED, Status.ROLLED_BACK}),
}


# After an incident closes, reports with its fingerprint keep folding into it for this long:
# alarm storms outlast the pipeline (1,000 alarms arrive over seconds; a fix takes one).
COOLDOWN_SECONDS = 15 * 60


@dataclass(frozen=True)
class Incident:
    incident_id: str
    status: str
    attempts: int
    cost_usd: float
    duplicates: int
    fingerprint: str
    correlation_id: str
    service: str
    issue_type: str
    severity: str
    summary: str
    created_at: str
    updated_at: str
    origin: str
    issue: dict[str, Any]
    # For alarms: the FunctionName dimension the first delivery investigated (None: no Lambda
    # target), so a re-drive investigates the same function (lambdas/manager/sweep.py).
    alarm_function: str | None = None
    last_reason: str = ""
    status_history: list[dict[str, Any]] = field(default_factory=list)
    # Healing: what was read, what was validated, what was changed (see lambdas/manager/heal.py).
    investigation: dict[str, Any] | None = None
    validated_fix: dict[str, Any] | None = None
    change_id: str | None = None
    heal_phase: str | None = None
    change: dict[str, Any] | None = None
    # When the change's first write was attempted (the wall clock, as Lambda's LastModified).
    attempted_at: str | None = None
    # The sweeper: which step (`<status>#<attempt>`) it re-drove, how often, and when last.
    redrive_of: str | None = None
    redrives: int = 0
    redriven_at: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Incident:
        item = from_item(item)
        values: dict[str, Any] = {f: item.get(f, _DEFAULTS.get(f)) for f in cls.__dataclass_fields__}
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The stable JSON shape the CLI prints (README documents it)."""
        return {
            "incident_id": self.incident_id,
            "status": self.status,
            "attempts": self.attempts,
            "cost_usd": round(self.cost_usd, 6),
            "duplicates": self.duplicates,
            "service": self.service,
            "issue_type": self.issue_type,
            "severity": self.severity,
            "summary": self.summary,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_reason": self.last_reason,
            "change": self.change,
        }


def count_status(incident: Incident, status: Status) -> int:
    """How many times the incident entered `status` (pauses and waits are counted this way)."""
    return sum(1 for h in incident.status_history if h.get("status") == status.value)


_DEFAULTS: dict[str, Any] = {
    "attempts": 0,
    "cost_usd": 0.0,
    "duplicates": 0,
    "issue": {},
    "last_reason": "",
    "status_history": [],
    "redrives": 0,
}


OPEN_TRIES = 4
# transition_and_put: tries of a transaction cancelled only by a conflict or throttling.
TRANSACTION_TRIES = 4
TRANSIENT_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


class ItemRefused(RuntimeError):
    """`IncidentStore.transition_and_put`: the item's own condition failed (it exists already);
    nothing was written."""


class IncidentContention(RuntimeError):
    """The fingerprint lock kept changing under us; the Lambda retry tries again later."""


class TargetHeld(RuntimeError):
    """`IncidentStore.claim_target`: another incident's change on the target is in flight."""

    def __init__(self, holder: Incident) -> None:
        super().__init__(f"held by {holder.incident_id}")
        self.holder = holder


# A change that ended with these phases left the function to a person: its rollback failed
# (the function holds values nobody chose together), or nothing showed whether it helped (kept,
# unproven). Selfheal makes no change on the function for `ATTENTION_SECONDS` after that.
NEEDS_PERSON = frozenset({"rollback_failed", "unverified"})
# A change undone for no recovery: by Selfheal, or by a person before Selfheal's restore.
ROLLED_BACK_PHASES = frozenset({"rolled_back", "restored_by_hand"})
ATTENTION_SECONDS = 24 * 3600


class TargetCoolingDown(RuntimeError):
    """`IncidentStore.claim_target`: a change on the target was rolled back (no recovery) lately,
    or ended needing a person (`NEEDS_PERSON`); Selfheal does not change the function again before
    `until` (a person looks first): after a rollback not the same change, after a failed rollback
    or an unverified change no change at all (`needs_person`)."""

    def __init__(self, holder: Incident, until: str) -> None:
        what = "left its change to a person" if holder.heal_phase in NEEDS_PERSON else "rolled back a change"
        super().__init__(f"{holder.incident_id} {what}; cooling down until {until}")
        self.holder = holder
        self.until = until
        self.needs_person = holder.heal_phase in NEEDS_PERSON


def _cooling(holder: Incident | None, hold_item: dict[str, Any] | None) -> TargetCoolingDown | None:
    """A hold whose holder rolled its change back, or left it to a person, cools down until
    `cooldown_until`; between ROLLED_BACK and its closing write it has no end yet."""
    until = str((hold_item or {}).get("cooldown_until") or "")
    if (
        holder is None
        or holder.heal_phase not in {*ROLLED_BACK_PHASES, *NEEDS_PERSON}
        or (until and until <= utc_now())
    ):
        return None
    return TargetCoolingDown(holder, until or "the end of its rollback")


# Heal phases in which an incident's change on its target is in flight (being written, verified or
# rolled back): the target's hold is live only while its holder is in one of them.
HOLDING_PHASES = frozenset({"applying", "applied", "rolling_back"})
HOLDING_STATUSES = frozenset({Status.APPROVED.value, Status.SCHEDULED.value, Status.VERIFYING.value})


def holds_target(incident: Incident) -> bool:
    return incident.status in HOLDING_STATUSES and incident.heal_phase in HOLDING_PHASES


def _cancellation(exc: ClientError) -> tuple[bool, bool]:
    """(lock held, incident exists) from a cancelled open transaction; (False, False) for anything else."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False, False
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
    if len(reasons) != 2:
        # No reasons (older emulators): only a condition can cancel this pair; assume the lock.
        return True, False
    return reasons[0] == "ConditionalCheckFailed", reasons[1] == "ConditionalCheckFailed"


def _placeholders(prefix: str, statuses: frozenset[Status], values: dict[str, Any]) -> str:
    """ ":prefix0, :prefix1, …" for the statuses, whose values are added to `values`."""
    placeholders = []
    for i, status in enumerate(sorted(s.value for s in statuses)):
        values[f":{prefix}{i}"] = status
        placeholders.append(f":{prefix}{i}")
    return ", ".join(placeholders)


def _and_attributes(
    condition: str, require: dict[str, Any], forbid: dict[str, Any], names: dict[str, str], values: dict[str, Any]
) -> str:
    """`condition` and: each `require`d attribute holds its value (None: absent), no `forbid`den one
    does (a set forbids each of its values)."""
    for i, (attr, value) in enumerate(sorted(require.items())):
        names[f"#req{i}"] = attr
        if value is None:
            condition = f"({condition}) AND attribute_not_exists(#req{i})"
        else:
            values[f":req{i}"] = value
            condition = f"({condition}) AND #req{i} = :req{i}"
    for i, (attr, value) in enumerate(sorted(forbid.items())):
        names[f"#not{i}"] = attr
        forbidden = sorted(value) if isinstance(value, (set, frozenset)) else [value]
        for j, one in enumerate(forbidden):
            values[f":not{i}_{j}"] = one
        listed = ", ".join(f":not{i}_{j}" for j in range(len(forbidden)))
        condition = f"({condition}) AND (attribute_not_exists(#not{i}) OR NOT (#not{i} IN ({listed})))"
    return condition


def _is_condition_failure(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class IncidentStore:
    def __init__(
        self,
        table_name: str,
        on_transition: Callable[..., None] | None = None,
        cooldown_seconds: int = COOLDOWN_SECONDS,
        attention_seconds: int = ATTENTION_SECONDS,
    ) -> None:
        self.table_name = table_name
        self.cooldown_seconds = cooldown_seconds
        self.attention_seconds = attention_seconds
        # Called with every status an incident enters, and on RESOLVED its cost (metrics hook:
        # `monitor.record_status`, see the handlers).
        self.on_transition = on_transition or (lambda _status, **_kw: None)

    @property
    def _table(self) -> Any:
        return aws.table(self.table_name)

    # ------------------------------------------------------------------ open / fold
    def open_or_fold(
        self,
        *,
        incident_id: str,
        fingerprint: str,
        correlation_id: str,
        issue: dict[str, Any],
        origin: str,
        alarm_function: str | None = None,
        count_duplicate: bool = True,
        fold_record: Callable[[str], dict[str, Any]] | None = None,
    ) -> tuple[Incident, bool]:
        """Open a new incident for the fingerprint, or fold into the open one (count only).

        The fingerprint lock and the incident are written in one transaction, so two
        concurrent reports of the same issue can never open two incidents. `fold_record(incident_id)`:
        the record written with the count of a fold into that incident (see `fold`).
        """
        now = utc_now()
        incident_item = {
            "pk": keys.incident_pk(incident_id),
            "sk": keys.META,
            "gsi2pk": f"INCIDENTS#{keys.day_of(now)}",
            "gsi2sk": now,
            "incident_id": incident_id,
            "status": Status.DETECTED.value,
            "attempts": 0,
            "cost_usd": 0,
            "duplicates": 0,
            "fingerprint": fingerprint,
            "correlation_id": correlation_id,
            "service": issue.get("service", ""),
            "issue_type": issue.get("issue_type", ""),
            "severity": issue.get("severity", ""),
            "summary": issue.get("summary", "")[:500],
            "created_at": now,
            "updated_at": now,
            "origin": origin,
            "issue": issue,
            "status_history": [{"status": Status.DETECTED.value, "at": now, "reason": "opened"}],
        }
        if alarm_function is not None:
            incident_item["alarm_function"] = alarm_function
        lock_item = {
            "pk": keys.fingerprint_pk(fingerprint),
            "sk": keys.OPEN,
            "incident_id": incident_id,
            "correlation_id": correlation_id,  # a fold attributes its record without reading the incident
            "created_at": now,
        }
        client = self._table.meta.client
        for _ in range(OPEN_TRIES):
            try:
                client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table_name,
                                "Item": to_item(lock_item),
                                "ConditionExpression": "attribute_not_exists(pk) OR cooldown_until < :now",
                                "ExpressionAttributeValues": to_item({":now": now}),
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.table_name,
                                "Item": to_item(incident_item),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                    ]
                )
                opened = Incident.from_item(incident_item)
                self._entered(opened)
                return opened, True
            except ClientError as exc:
                lock_held, incident_exists = _cancellation(exc)
                if not (lock_held or incident_exists):
                    raise  # throttling, a transaction conflict, ...: the Lambda retry redoes the step
            if incident_exists:
                # This delivery opened it before (a retry): carry on with that incident, open or not.
                existing = self.get(incident_id)
                if existing is not None:
                    return existing, existing.status not in TERMINAL
            existing_id = self.open_incident_for(fingerprint)
            if existing_id is None:
                continue  # the lock was released or expired between our write and the read: try again
            record = fold_record(existing_id) if fold_record is not None else None
            counted = self.fold(existing_id, record=record) if count_duplicate else True
            folded = self.get(existing_id) if counted is not None else None
            if folded is not None:
                return folded, False
            # The lock points at an incident that does not exist: remove that dangling lock, try again.
            self.release_now(fingerprint, existing_id)
        raise IncidentContention(f"could not open or fold fingerprint {fingerprint} after {OPEN_TRIES} tries")

    def fold(
        self,
        incident_id: str,
        *,
        record: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
        also: list[dict[str, Any]] | None = None,
    ) -> bool | None:
        """Count one duplicate (and add `cost_usd`) in one conditional write. True: counted; None:
        the incident item is gone.

        `record` (an item of this table, keyed by the delivery: the fold's decision) is written in
        the same transaction, only if it does not exist yet: a delivery is then counted once,
        however often it arrives (False: counted before, nothing written). `also`: more operations
        for that transaction, in the client's typed shape (the invocation's cost records).
        """
        update = {
            "TableName": self.table_name,
            "Key": typed({"pk": keys.incident_pk(incident_id), "sk": keys.META}),
            "UpdateExpression": "ADD duplicates :one, cost_usd :cost SET updated_at = :now",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": typed(to_item({":one": 1, ":cost": cost_usd, ":now": utc_now()})),
        }
        client = aws.client("dynamodb")
        try:
            if record is None:
                client.update_item(**update)
                return True
            put = {"TableName": self.table_name, "Item": typed(to_item(record))}
            client.transact_write_items(
                TransactItems=[
                    {"Put": {**put, "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Update": update},
                    *(also or []),
                ]
            )
        except ClientError as exc:
            error = exc.response.get("Error", {}).get("Code")
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if error == "ConditionalCheckFailedException":
                return None
            if error == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]:
                return False
            if error == "TransactionCanceledException" and reasons[1:2] == ["ConditionalCheckFailed"]:
                return None
            raise  # throttling, a conflict: the Lambda retry folds it
        return True

    def live_lock(self, fingerprint: str) -> tuple[str, str] | None:
        """(incident id, correlation id) of the incident reports with this fingerprint fold into now:
        open, or closed and still cooling down; None when there is none."""
        item = self._lock(fingerprint)
        if not item or item.get("cooldown_until", "9999") < utc_now():
            return None
        return item["incident_id"], item.get("correlation_id", "")

    def open_incident_for(self, fingerprint: str) -> str | None:
        """The incident the fingerprint's lock names (open, or closed, cooling down or not)."""
        item = self._lock(fingerprint)
        return item["incident_id"] if item else None

    def _lock(self, fingerprint: str) -> dict[str, Any] | None:
        return self._table.get_item(
            Key={"pk": keys.fingerprint_pk(fingerprint), "sk": keys.OPEN}, ConsistentRead=True
        ).get("Item")

    # ------------------------------------------------------------------ transitions
    def transition(
        self,
        incident_id: str,
        to: Status,
        *,
        reason: str,
        expected_attempt: int | None = None,
        new_attempt: int | None = None,
        allowed_from: frozenset[Status] | None = None,
        redo_from: frozenset[Status] = frozenset(),
        require: dict[str, Any] | None = None,
        forbid: dict[str, Any] | None = None,
        also_set: dict[str, Any] | None = None,
    ) -> Incident | None:
        """Move forward, or return None when the incident is not in a state that may precede `to`.

        `redo_from`: statuses this same step itself produces, accepted at the attempt the step
        leads to. A Lambda retry after the status was written but before the event went out
        must finish the step, not drop it. (Duplicates never get here: Powertools idempotency
        holds them while a step runs and answers them once it has finished.)

        `require`: top-level attributes that must hold these values (None = must not exist), on
        top of the status condition; `forbid`: values they must not hold (absent is fine; a set:
        none of its values);
        `also_set`: attributes written in the same update.
        """
        try:
            result = self._table.update_item(
                **self._transition_update(
                    incident_id,
                    to,
                    reason=reason,
                    expected_attempt=expected_attempt,
                    new_attempt=new_attempt,
                    allowed_from=allowed_from,
                    redo_from=redo_from,
                    require=require,
                    forbid=forbid,
                    also_set=also_set,
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        incident = Incident.from_item(result["Attributes"])
        if to in TERMINAL:
            self.release_closed(incident)
        elif to == Status.PATCH_READY and incident.origin != "alarm":
            # No alarm will return to OK and resolve it: the patch is a person's now, and after the
            # cool-down a new report of the service's problem opens an incident instead of folding here forever.
            self._release(incident)
        self._entered(incident)
        return incident

    def transition_and_put(
        self,
        incident_id: str,
        to: Status,
        *,
        put: dict[str, Any],
        reason: str,
        expected_attempt: int | None = None,
        redo_from: frozenset[Status] = frozenset(),
    ) -> bool:
        """`transition` and a Put of another item (`put`: Item, its condition, and TableName when it
        is not this table's) in one transaction: a step's stored answer lands with the status it leads to, or neither does.
        False: the incident may not move (nothing written); ItemRefused: `put`'s condition failed.
        Not for terminal statuses (their cool-down is a second write)."""
        assert to not in TERMINAL
        update = self._transition_update(
            incident_id, to, reason=reason, expected_attempt=expected_attempt, redo_from=redo_from
        )
        client = self._table.meta.client  # a resource's client: plain Python values
        for attempt in range(TRANSACTION_TRIES):
            try:
                client.transact_write_items(
                    TransactItems=[
                        {"Put": {"TableName": self.table_name, **put}},
                        {"Update": {"TableName": self.table_name, **update}},
                    ]
                )
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    raise ItemRefused(put["Item"]["sk"]) from exc
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    return False
                # A concurrent write on the incident (a storm's folds) or throttling: the step's
                # answer is still in memory, so try again here rather than redo the step.
                if attempt + 1 == TRANSACTION_TRIES or not set(reasons) - {"None"} <= TRANSIENT_CANCELLATIONS:
                    raise
                time.sleep(0.05 * 2**attempt * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security
        self.on_transition(to.value)
        return True

    def _transition_update(
        self,
        incident_id: str,
        to: Status,
        *,
        reason: str,
        expected_attempt: int | None = None,
        new_attempt: int | None = None,
        allowed_from: frozenset[Status] | None = None,
        redo_from: frozenset[Status] = frozenset(),
        require: dict[str, Any] | None = None,
        forbid: dict[str, Any] | None = None,
        also_set: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The conditional UpdateItem (key, expressions) that moves the incident to `to`."""
        sources = allowed_from or ALLOWED_FROM[to]
        now = utc_now()
        reason = scrub(reason)  # reasons quote QA and provider output
        values: dict[str, Any] = {
            ":to": to.value,
            ":now": now,
            ":reason": reason[:1000],
            ":hist": [{"status": to.value, "at": now, "reason": reason[:300]}],
        }
        names = {"#status": "status"}
        condition = f"#status IN ({_placeholders('from', sources, values)})"
        if expected_attempt is not None:
            condition += " AND attempts = :expected"
            values[":expected"] = expected_attempt
        landing_attempt = new_attempt if new_attempt is not None else expected_attempt
        if redo_from and landing_attempt is not None:
            condition = (
                f"({condition}) OR (#status IN ({_placeholders('redo', redo_from, values)}) AND attempts = :landing)"
            )
            values[":landing"] = landing_attempt
        condition = _and_attributes(condition, require or {}, forbid or {}, names, values)
        update = "SET #status = :to, updated_at = :now, last_reason = :reason, status_history = list_append(status_history, :hist)"
        for i, (attr, value) in enumerate(sorted((also_set or {}).items())):
            names[f"#set{i}"] = attr
            values[f":set{i}"] = value
            update += f", #set{i} = :set{i}"
        if new_attempt is not None:
            update += ", attempts = :attempt"
            values[":attempt"] = new_attempt
        return {
            "Key": {"pk": keys.incident_pk(incident_id), "sk": keys.META},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item(values),
        }

    def release_closed(self, incident: Incident) -> None:
        """What a closing transition releases: the fingerprint (cooling down) and the target's hold.
        Called again by a retry that finds the incident closed by a try that died right after the write."""
        self._release(incident)
        self._release_target(incident)

    def _entered(self, incident: Incident) -> None:
        self.on_transition(
            incident.status, incident_cost_usd=incident.cost_usd if incident.status == Status.RESOLVED.value else None
        )

    def _release(self, incident: Incident) -> None:
        """Start the fingerprint's cool-down; after it, a recurrence opens a new incident."""
        self._cool_down({"pk": keys.fingerprint_pk(incident.fingerprint), "sk": keys.OPEN}, incident.incident_id)

    def _cool_down(self, key: dict[str, str], incident_id: str, seconds: int | None = None) -> None:
        """Mark a lock or hold item `cooldown_until` now + `seconds` (`cooldown_seconds` unless
        given; expiring an hour later), only while it still names `incident_id`."""
        until = datetime.now(UTC) + timedelta(seconds=self.cooldown_seconds if seconds is None else seconds)
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression="SET cooldown_until = :until, #ttl = :ttl",
                ConditionExpression="incident_id = :id",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":until": until.isoformat(timespec="milliseconds"),
                    ":ttl": int(until.timestamp()) + 3600,
                    ":id": incident_id,
                },
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    def release_now(self, fingerprint: str, incident_id: str) -> None:
        """End the cool-down: the source says the problem is gone, so the next report is new."""
        self._delete_owned({"pk": keys.fingerprint_pk(fingerprint), "sk": keys.OPEN}, incident_id)

    def release_operation(self, fingerprint: str, incident_id: str) -> dict[str, Any]:
        """`release_now` as a transaction operation (client shape), for a step that writes it with
        its records (`AgentOpsMonitor.hold`): until they are written, a retry finds the lock."""
        return {
            "Delete": {
                "TableName": self.table_name,
                "Key": typed({"pk": keys.fingerprint_pk(fingerprint), "sk": keys.OPEN}),
                "ConditionExpression": "incident_id = :id",
                "ExpressionAttributeValues": typed({":id": incident_id}),
            }
        }

    def _delete_owned(self, key: dict[str, str], incident_id: str) -> None:
        """Delete a lock or hold item only while it still names `incident_id` (else leave it be)."""
        try:
            self._table.delete_item(
                Key=key, ConditionExpression="incident_id = :id", ExpressionAttributeValues={":id": incident_id}
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    # ------------------------------------------------------------------ target holds
    def claim_target(
        self,
        incident: Incident,
        target: str,
        *,
        statuses: frozenset[Status],
        require: dict[str, Any],
        values: dict[str, Any],
        past_cooldown: bool = False,
    ) -> Incident | None:
        """Hold `target` for the incident and `record` `values` on it, in one transaction: one change
        per function is in flight at a time (applied, verified, kept or rolled back). The holder
        taking its own hold again (a Lambda retry) is fine. Returns the incident as written (`values`
        on what the condition checked; not read back); None: the incident may not move; raises
        TargetHeld when another incident's change is in flight. A hold whose holder is no longer
        changing the target (a crash between its closing write and the release) is removed: the
        holder's own state is the truth. A rolled-back change's hold cooling down raises
        TargetCoolingDown, unless `past_cooldown` (the caller saw it and this change is another)."""
        incident_id = incident.incident_id
        hold = {
            "pk": keys.target_pk(target),
            "sk": keys.HOLD,
            "incident_id": incident_id,
            "created_at": utc_now(),
        }
        client = self._table.meta.client
        for _ in range(OPEN_TRIES):
            try:
                client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table_name,
                                "Item": to_item(hold),
                                "ConditionExpression": "attribute_not_exists(pk) OR incident_id = :me",
                                "ExpressionAttributeValues": {":me": incident_id},
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table_name,
                                **self._record_update(incident_id, statuses=statuses, require=require, values=values),
                            }
                        },
                    ]
                )
                return replace(incident, **values)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    return None
                if reasons[:1] != ["ConditionalCheckFailed"]:
                    raise  # a conflict, throttling: the Lambda retry claims again
            hold_item = self._hold(target)
            holder_id = str(hold_item["incident_id"]) if hold_item else None
            if holder_id is None or holder_id == incident_id:
                continue  # released (or ours) between the write and the read: try again
            holder = self.get(holder_id)
            if holder is not None and holds_target(holder):
                raise TargetHeld(holder)
            cooling = _cooling(holder, hold_item)
            if cooling is not None and not past_cooldown:
                raise cooling
            self._release_target_of(target, holder_id)  # stale: its holder has settled
        raise IncidentContention(f"could not claim target {target} after {OPEN_TRIES} tries")

    def cooling_down(self, target: str) -> TargetCoolingDown | None:
        """The rolled-back change whose hold on `target` is cooling down, if any (two reads): for a
        change that waits for a person, who should not be asked to approve what will not be made."""
        hold_item = self._hold(target)
        return _cooling(self.get(str(hold_item["incident_id"])), hold_item) if hold_item else None

    def holder_of(self, target: str) -> str | None:
        item = self._hold(target)
        return str(item["incident_id"]) if item else None

    def _hold(self, target: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"pk": keys.target_pk(target), "sk": keys.HOLD}, ConsistentRead=True).get(
            "Item"
        )
        return dict(item) if item else None

    def _release_target(self, incident: Incident) -> None:
        """An incident that closes no longer holds its target (if it held one). One that rolled its
        change back keeps the hold, cooling down, for `cooldown_seconds`: another report of the same
        failure (the scan's, another alarm's) would otherwise make the change that did not help again.
        One whose rollback failed, or whose change is kept unverified, keeps it for `attention_seconds`:
        the function is a person's until then, and another change would stack on theirs."""
        target = (incident.change or {}).get("target")
        if not target:
            return
        if incident.heal_phase in ROLLED_BACK_PHASES:
            self._cool_down({"pk": keys.target_pk(target), "sk": keys.HOLD}, incident.incident_id)
        elif incident.heal_phase in NEEDS_PERSON:
            self._cool_down(
                {"pk": keys.target_pk(target), "sk": keys.HOLD}, incident.incident_id, self.attention_seconds
            )
        else:
            self._release_target_of(target, incident.incident_id)

    def _release_target_of(self, target: str, incident_id: str) -> None:
        self._delete_owned({"pk": keys.target_pk(target), "sk": keys.HOLD}, incident_id)

    # ------------------------------------------------------------------ reads
    def get(self, incident_id: str) -> Incident | None:
        item = self._table.get_item(
            Key={"pk": keys.incident_pk(incident_id), "sk": keys.META}, ConsistentRead=True
        ).get("Item")
        return Incident.from_item(item) if item else None

    def list_recent(self, days: int = 7, limit: int = 100) -> list[Incident]:
        """Newest first, one query per day on GSI2 (no scans)."""
        from boto3.dynamodb.conditions import Key

        found: list[Incident] = []
        today = datetime.now(UTC).date()
        for offset in range(days):
            day = (today - timedelta(days=offset)).isoformat()
            kwargs: dict[str, Any] = {
                "IndexName": "gsi2",
                "KeyConditionExpression": Key("gsi2pk").eq(f"INCIDENTS#{day}"),
                "ScanIndexForward": False,
            }
            while len(found) < limit:
                page = self._table.query(**kwargs)
                found.extend(Incident.from_item(i) for i in page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            if len(found) >= limit:
                break
        return found[:limit]

    def record(
        self,
        incident_id: str,
        *,
        statuses: frozenset[Status],
        require: dict[str, Any] | None = None,
        values: dict[str, Any],
    ) -> Incident | None:
        """Write attributes without changing status, only while the incident is in `statuses` (and
        `require` holds, None = attribute absent); None when the condition fails."""
        try:
            result = self._table.update_item(
                **self._record_update(incident_id, statuses=statuses, require=require, values=values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return Incident.from_item(result["Attributes"])

    def _record_update(
        self,
        incident_id: str,
        *,
        statuses: frozenset[Status],
        require: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> dict[str, Any]:
        """The conditional UpdateItem (key, expressions) of `record`."""
        names: dict[str, str] = {"#status": "status"}
        vals: dict[str, Any] = {":now": utc_now()}
        placeholders = []
        for i, status in enumerate(sorted(s.value for s in statuses)):
            vals[f":from{i}"] = status
            placeholders.append(f":from{i}")
        condition = f"#status IN ({', '.join(placeholders)})"
        for i, (attr, value) in enumerate(sorted((require or {}).items())):
            names[f"#req{i}"] = attr
            if value is None:
                condition += f" AND attribute_not_exists(#req{i})"
            else:
                vals[f":req{i}"] = value
                condition += f" AND #req{i} = :req{i}"
        update = "SET updated_at = :now"
        for i, (attr, value) in enumerate(sorted(values.items())):
            names[f"#set{i}"] = attr
            vals[f":set{i}"] = value
            update += f", #set{i} = :set{i}"
        return {
            "Key": {"pk": keys.incident_pk(incident_id), "sk": keys.META},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item(vals),
        }

    def add_cost(self, incident_id: str, cost_usd: float) -> None:
        update = self.cost_update(incident_id, cost_usd)
        del update["TableName"]  # the resource's table names itself
        self._table.update_item(**update)

    def cost_update(self, incident_id: str, cost_usd: float) -> dict[str, Any]:
        """The UpdateItem that adds to an incident's cost (also a transaction's Update)."""
        return {
            "TableName": self.table_name,
            "Key": {"pk": keys.incident_pk(incident_id), "sk": keys.META},
            "UpdateExpression": "ADD cost_usd :c",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": to_item({":c": cost_usd}),
        }
