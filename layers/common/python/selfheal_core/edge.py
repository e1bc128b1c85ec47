"""The edge primitives agent.py composes: the idempotency key and set-up, bounds, rejecting bad input visibly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import Settings
from .observability import logger
from .ports import EventRecorder
from .rejections import RejectionLog

# A step is identified by what it is about, not by the delivery: replays and duplicate
# deliveries of the same step share a key. Alarms and schedules fall back to the event id; a
# request resumed after a budget pause is a new step (`resumed` counts them), and so is a step the
# sweeper re-drives (`redrive` counts those; the step then finishes from its stored outcome). Events about a fix
# include the fix: a forged FixValidated with another fix must not take the genuine one's key
# (its refusal would otherwise be replayed as the answer to the genuine event).
# An external IssueReported is keyed by its producer's idempotency_key or the event id and nothing
# else: not a metadata.incident_id the producer chose (two different reports could share one), nor
# an attempt it sets (a reused key would pass for a new one and skip the KEY_REUSED refusal).
IDEMPOTENCY_KEY = (
    "\"detail-type\" == 'IssueReported'"
    " && ['IssueReported', detail.data.idempotency_key || detail.idempotency_key || id]"
    ' || ["detail-type", detail.metadata.incident_id || id,'
    " detail.metadata.attempt, detail.data.resumed, detail.data.fix, detail.data.redrive]"
)
# A producer's key stands for one issue: under a key already used, a report of another service,
# issue type or resource is refused (listed), never answered with the first report's outcome.
ISSUE_IDENTITY = (
    "\"detail-type\" == 'IssueReported' && [detail.data.service || detail.service,"
    " detail.data.issue_type || detail.issue_type, detail.data.resource || detail.resource]"
)
KEY_REUSED = (
    "idempotency_key already used for a different issue (service, issue_type or resource differ); "
    "a new issue needs a new key"
)

# Checked before anything copies or stores the event. EventBridge delivers up to 256 KB and
# 1,000 levels of nesting; no valid event of ours comes near these.
MAX_EVENT_DEPTH = 32
MAX_KEY_CHARS = 256
MAX_EVENT_CHARS = 262_144


def idempotency(settings: Settings, hold: Callable[[dict[str, Any]], None] | None = None) -> tuple[Any, Any]:
    """Powertools' DynamoDB idempotency; `hold(operation)` takes the step's "completed" write.

    The monitor holds it and writes it with the step's records when the step settles: one API
    call fewer per step. If that transaction fails, the record stays INPROGRESS until the
    function's remaining time has passed (Powertools registers it) and the Lambda retry then
    redoes the step, as when the function dies before completing it.
    """
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    class HeldCompletion(DynamoDBPersistenceLayer):
        def _validate_payload(self, data_payload: Any, stored_data_record: Any) -> None:
            if stored_data_record.payload_hash:  # a record written before ISSUE_IDENTITY has none
                super()._validate_payload(data_payload, stored_data_record)

        def _update_record(self, data_record: Any) -> None:
            if hold is None:
                super()._update_record(data_record)
                return
            client, self.client = self.client, _Holding(hold)  # type: ignore[assignment]
            try:
                super()._update_record(data_record)
            finally:
                self.client = client

    persistence = HeldCompletion(table_name=settings.idempotency_table_name)
    config = IdempotencyConfig(
        event_key_jmespath=IDEMPOTENCY_KEY,
        payload_validation_jmespath=ISSUE_IDENTITY,
        raise_on_no_idempotency_key=False,
        expires_after_seconds=6 * 3600,
    )
    return persistence, config


class _Holding:
    """Stands in for the DynamoDB client while Powertools writes a record: hands the UpdateItem over."""

    def __init__(self, hold: Callable[[dict[str, Any]], None]) -> None:
        self._hold = hold

    def update_item(self, **update: Any) -> None:
        self._hold({"Update": update})


def reject(event: Any, reason: str, *, agent: str, settings: Settings, monitor: EventRecorder) -> dict[str, Any]:
    """Keep the refused event with its reason (operators list them), count it, carry on."""
    RejectionLog(settings.monitoring_table_name).record(reason=reason, event=event, agent=agent)
    logger.warning("event rejected", extra={"reason": reason[:1000]})
    monitor.record_event("event_rejected", {"reason": reason[:300]})
    return {"action": "rejected", "reason": reason[:500]}  # stored as the idempotent answer: kept small


def bounds_problem(event: Any) -> str | None:
    """Why an event is too deep, too large or has oversized keys; iterative, so depth cannot crash it."""
    stack: list[tuple[Any, int]] = [(event, 1)]
    size = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EVENT_DEPTH:
            return f"event is nested deeper than {MAX_EVENT_DEPTH} levels"
        if isinstance(node, dict):
            for key, value in node.items():
                if len(str(key)) > MAX_KEY_CHARS:
                    return f"event has a field name longer than {MAX_KEY_CHARS} characters"
                size += len(str(key)) + 4
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
            size += 2
        else:
            size += len(node) if isinstance(node, str) else 8
        if size > MAX_EVENT_CHARS:
            return f"event is larger than {MAX_EVENT_CHARS} characters"
    return None
