"""What every agent handler does at the edge: idempotency set-up and rejecting bad input visibly."""

from __future__ import annotations

from typing import Any

from .config import Settings
from .observability import logger
from .rejections import RejectionLog

# A step is identified by what it is about, not by the delivery: replays and duplicate
# deliveries of the same step share a key. Alarms and schedules fall back to the event id; a
# request resumed after a budget pause is a new step (`resumed` counts them). Events about a fix
# include the fix: a forged FixValidated with another fix must not take the genuine one's key
# (its refusal would otherwise be replayed as the answer to the genuine event).
IDEMPOTENCY_KEY = (
    '["detail-type", detail.metadata.incident_id || detail.data.idempotency_key || detail.idempotency_key || id,'
    " detail.metadata.attempt, detail.data.resumed, detail.data.fix]"
)


def idempotency(settings: Settings) -> tuple[Any, Any]:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table_name)
    config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, raise_on_no_idempotency_key=False, expires_after_seconds=6 * 3600)
    return persistence, config


def reject(event: Any, reason: str, *, agent: str, settings: Settings, monitor: Any) -> dict[str, Any]:
    """Keep the refused event with its reason (operators list them), count it, carry on."""
    RejectionLog(settings.monitoring_table_name).record(reason=reason, event=event, agent=agent)
    logger.warning("event rejected", extra={"reason": reason})
    monitor.record_event("event_rejected", {"reason": reason[:300]})
    return {"action": "rejected", "reason": reason}
