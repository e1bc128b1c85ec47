"""What every agent handler does at the edge: idempotency set-up and rejecting bad input visibly."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .config import Settings
from .events import InvalidEvent, parse_detail
from .observability import logger
from .ports import EventRecorder
from .rejections import RejectionLog

# A step is identified by what it is about, not by the delivery: replays and duplicate
# deliveries of the same step share a key. Alarms and schedules fall back to the event id; a
# request resumed after a budget pause is a new step (`resumed` counts them), and so is a step the
# sweeper re-drives (`redrive` counts those; the step then finishes from its stored outcome). Events about a fix
# include the fix: a forged FixValidated with another fix must not take the genuine one's key
# (its refusal would otherwise be replayed as the answer to the genuine event).
# An external IssueReported is keyed by its producer's idempotency_key or the event id, never by
# a metadata.incident_id the producer chose (two different reports could share one).
IDEMPOTENCY_KEY = (
    "[\"detail-type\","
    " (\"detail-type\" == 'IssueReported' && (detail.data.idempotency_key || detail.idempotency_key || id))"
    " || detail.metadata.incident_id || id,"
    " detail.metadata.attempt, detail.data.resumed, detail.data.fix, detail.data.redrive]"
)

# Checked before anything copies or stores the event. EventBridge delivers up to 256 KB and
# 1,000 levels of nesting; no valid event of ours comes near these.
MAX_EVENT_DEPTH = 32
MAX_KEY_CHARS = 256
MAX_EVENT_CHARS = 262_144


def idempotency(settings: Settings) -> tuple[Any, Any]:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table_name)
    config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, raise_on_no_idempotency_key=False, expires_after_seconds=6 * 3600)
    return persistence, config


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


def screened(
    *, agent: str, settings: Settings, monitor: EventRecorder, validate: Callable[[dict[str, Any]], Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Refuse out-of-bounds and invalid events, with a recorded reason, before idempotency runs.

    Before: idempotency would copy an event that is too deep, and it would cache a refusal
    under the producer's key, so the corrected report sent again with that key was answered
    "rejected" from the cache and never run.
    """

    def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            problem = bounds_problem(event)
            if problem is None and not isinstance(event, dict):
                problem = "event must be a JSON object"
            if problem is None:
                try:
                    validate(event)
                except InvalidEvent as exc:
                    problem = exc.reason
            if problem is not None:
                return reject(event, problem, agent=agent, settings=settings, monitor=monitor)
            return handler(event, context)

        return wrapper

    return decorator


def step_validator(agent_label: str, handled: frozenset[str]) -> Callable[[dict[str, Any]], Any]:
    """For agents that take only agent-to-agent steps: the detail-type, its source and its model."""

    def validate(event: dict[str, Any]) -> Any:
        detail_type = event.get("detail-type", "")
        if detail_type not in handled:
            raise InvalidEvent(f"{agent_label} does not handle {str(detail_type)[:100]!r}")
        return parse_detail(detail_type, event.get("detail"), source=event.get("source", ""), event_id=event.get("id"))

    return validate
