"""Monitoring records and their keys, exactly as selfheal_core/keys.py lays them out.

Decisions go to the decisions table; events, costs and collaboration messages to the
monitoring table. Items without an incident belong to their agent (pk AGENT#<agent>).
"""

# No `from __future__ import annotations`: see selfheal_core/events.py (model classes, cold start).

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfheal_core import keys

FIELD_CAP_CHARS = 8_000  # inputs / outputs / event data; keeps items far below DynamoDB's 400 KB
STEP_CAP_CHARS = 1_000
MAX_STEPS = 25
TRANSIENT_TTL_DAYS = 90  # events and messages; decisions and costs are kept


class ReasoningStep(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    thought: str = ""
    action: str = ""
    observation: str = ""

    @field_validator("thought", "action", "observation", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value)[:STEP_CAP_CHARS]


class Decision(BaseModel):
    model_config = ConfigDict(defer_build=True)

    decision_type: str = Field(min_length=1, max_length=64)
    reasoning_chain: list[ReasoningStep]
    confidence_score: float = Field(ge=0, le=1)

    @field_validator("reasoning_chain", mode="before")
    @classmethod
    def _cap(cls, value: Any) -> Any:
        return list(value)[:MAX_STEPS] if isinstance(value, list | tuple) else value


def capped(value: Any, cap: int = FIELD_CAP_CHARS) -> Any:
    """Large inputs / outputs keep a preview and their size instead of the whole value."""
    text = json.dumps(value, default=str)
    if len(text) <= cap:
        return value
    return {"truncated": True, "size_chars": len(text), "preview": text[:cap]}


def _ttl(days: int) -> int:
    return int(time.time()) + days * 86_400


def once_sk(agent: str, once: str) -> str:
    """The sort key of a step's decision, written at most once (`record_decision(once=...)`)."""
    return f"DECISION#ONCE#{agent}#{once}"[:1024]


def decision_item(
    *,
    agent: str,
    incident_id: str | None,
    correlation_id: str | None,
    decision: Decision,
    inputs: Any,
    outputs: Any,
    model: str | None,
    cost_usd: float,
    now: str,
    once: str | None = None,
) -> dict[str, Any]:
    # A step's decision has a key of its own (written once); others are keyed by time.
    uid = keys.uid()
    sk = once_sk(agent, once) if once else f"DECISION#{now}#{uid}"
    return {
        "pk": keys.owner_pk(incident_id, agent),
        "sk": sk,
        "gsi1pk": f"AGENT#{agent}",
        "gsi1sk": now,
        "record_type": "decision",
        "decision_id": uid,
        "agent": agent,
        "incident_id": incident_id,
        "correlation_id": correlation_id,
        "decision_type": decision.decision_type,
        "reasoning_chain": [s.model_dump() for s in decision.reasoning_chain],
        "inputs": capped(inputs),
        "outputs": capped(outputs),
        "confidence_score": decision.confidence_score,
        "model": model,
        "cost_usd": cost_usd,
        "created_at": now,
        "day": keys.day_of(now),
    }


def event_item(
    *, agent: str, incident_id: str | None, correlation_id: str | None, event_type: str, data: Any, now: str
) -> dict[str, Any]:
    return {
        "pk": keys.owner_pk(incident_id, agent),
        "sk": f"EVENT#{now}#{keys.uid()}",
        "gsi1pk": f"EVENT#{event_type}",
        "gsi1sk": now,
        "record_type": "event",
        "event_type": event_type,
        "agent": agent,
        "incident_id": incident_id,
        "correlation_id": correlation_id,
        "data": capped(data if data is not None else {}),
        "created_at": now,
        "ttl": _ttl(TRANSIENT_TTL_DAYS),
    }


def cost_item(
    *,
    agent: str,
    incident_id: str | None,
    correlation_id: str | None,
    kind: str,
    cost_usd: float,
    now: str,
    **details: Any,
) -> dict[str, Any]:
    """kind: llm | lambda | events. `details` carries the raw usage so costs can be recomputed."""
    day = keys.day_of(now)
    return {
        "pk": keys.owner_pk(incident_id, agent),
        "sk": f"COST#{now}#{keys.uid()}",
        "gsi1pk": f"COST#AGENT#{agent}",
        "gsi1sk": now,
        "gsi2pk": f"COST#DAY#{day}",
        "gsi2sk": f"{agent}#{now}",
        "record_type": "cost",
        "kind": kind,
        "cost_usd": cost_usd,
        "agent": agent,
        "incident_id": incident_id,
        "correlation_id": correlation_id,
        "day": day,
        "created_at": now,
        **details,
    }


def message_item(
    *, from_agent: str, to_agent: str, message_type: str, incident_id: str | None, correlation_id: str | None, now: str
) -> dict[str, Any]:
    return {
        "pk": keys.owner_pk(incident_id, from_agent),
        "sk": f"MSG#{now}#{keys.uid()}",
        "gsi1pk": f"COLLAB#{keys.day_of(now)}",
        "gsi1sk": f"{now}#{from_agent}#{to_agent}",
        "record_type": "message",
        "from_agent": from_agent,
        "to_agent": to_agent,
        "flow": f"{from_agent}->{to_agent}",
        "message_type": message_type,
        "incident_id": incident_id,
        "correlation_id": correlation_id,
        "created_at": now,
        "ttl": _ttl(TRANSIENT_TTL_DAYS),
    }
