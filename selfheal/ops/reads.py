"""The read verbs: incidents, trace, patch, costs and budget, analyze, rejected events, notifications.

All of them read through the layer's own stores (IncidentStore, the monitoring timeline,
BudgetGuard, RejectionLog, the analyzer), so the CLI sees exactly what the agents wrote.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from agentops_monitoring import timeline
from agentops_monitoring.analyzer import AgentOpsAnalyzer
from agentops_monitoring.budget import BudgetGuard
from agentops_monitoring.store import query_all
from selfheal_core import aws, keys
from selfheal_core import catalog as names
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.config import Settings, parse_parameters
from selfheal_core.ddb import from_item
from selfheal_core.events import ArtifactRef
from selfheal_core.incidents import IncidentStore
from selfheal_core.rejections import RejectionLog

from .target import OperatorError, Target, local_control


def incidents(target: Target, days: int = 7, limit: int = 100) -> list[dict[str, Any]]:
    return [i.public() for i in IncidentStore(target.decisions_table).list_recent(days=days, limit=limit)]


def trace(target: Target, incident_id: str) -> dict[str, Any]:
    incident = IncidentStore(target.decisions_table).get(incident_id)
    if incident is None:
        raise OperatorError(f"incident {incident_id!r} not found")
    entries = timeline(incident_id, decisions_table=target.decisions_table, monitoring_table=target.monitoring_table)
    decisions = []
    for e in entries:
        if e.get("kind") != "decision":
            continue
        outputs = e.get("outputs") if isinstance(e.get("outputs"), dict) else {}
        decisions.append(
            {
                "at": e.get("at"),
                "agent": e.get("agent"),
                "correlation_id": e.get("correlation_id"),
                "decision_type": e.get("decision_type"),
                "reasoning_chain": e.get("reasoning_chain", []),
                "confidence_score": e.get("confidence_score"),
                "model": e.get("model"),
                "cost_usd": e.get("cost_usd", 0.0),
                "evidence": outputs.get("evidence") if isinstance(outputs, dict) else None,
                "outputs": outputs,
            }
        )
    costs = [e for e in entries if e.get("kind") == "cost"]
    messages = [e for e in entries if e.get("kind") == "message"]
    events = [e for e in entries if e.get("kind") == "event"]
    return {
        "incident": incident.public(),
        "status_history": incident.status_history,
        "decisions": decisions,
        "messages": [
            {"at": m.get("at"), "flow": m.get("flow"), "message_type": m.get("message_type")} for m in messages
        ],
        "events": [
            {"at": e.get("at"), "agent": e.get("agent"), "event_type": e.get("event_type"), "data": e.get("data")}
            for e in events
        ],
        "costs": {
            "total_usd": round(sum(float(c.get("cost_usd", 0)) for c in costs), 8),
            "by_agent": _sum_by(costs, "agent"),
            "by_kind": _sum_by(costs, "kind"),
        },
        "correlation_ids": sorted({d["correlation_id"] for d in decisions if d.get("correlation_id")}),
        "agents": sorted({d["agent"] for d in decisions if d.get("agent")}),
    }


def patch(target: Target, incident_id: str) -> dict[str, Any]:
    """The validated code patch of a PATCH_READY incident, as an mbox message for `git am`."""
    incident = IncidentStore(target.decisions_table).get(incident_id)
    if incident is None:
        raise OperatorError(f"incident {incident_id!r} not found in {target.decisions_table}")
    ref = _patch_ref(target, incident_id)
    if ref is None:
        raise OperatorError(
            f"incident {incident_id} has no validated code patch (status {incident.status}); "
            "only code fixes are kept as patches"
        )
    stored = ArtifactStore(ref["bucket"]).get_json(ArtifactRef.model_validate(ref))
    return {"incident_id": incident_id, "status": incident.status, "artifact": ref, "mbox": stored["mbox"]}


def _patch_ref(target: Target, incident_id: str) -> dict[str, Any] | None:
    # The Manager keeps the patch reference on the incident item; Incident does not carry it.
    item = (
        aws.table(target.decisions_table)
        .get_item(Key={"pk": keys.incident_pk(incident_id), "sk": keys.META})
        .get("Item")
        or {}
    )
    ref = from_item(item.get("patch"))
    return ref if isinstance(ref, dict) else None


def _sum_by(items: list[dict[str, Any]], key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for item in items:
        out[str(item.get(key) or "unknown")] += float(item.get("cost_usd", 0) or 0)
    return {k: round(v, 8) for k, v in sorted(out.items())}


def costs(target: Target, days: int = 7) -> dict[str, Any]:
    """Cost by agent, model, incident and day (GSI2 COST#DAY#<day>, no scans) and today's budget."""
    items: list[dict[str, Any]] = []
    today = datetime.now(UTC).date()
    for offset in range(days):
        day = (today - timedelta(days=offset)).isoformat()
        kwargs = {"IndexName": "gsi2", "KeyConditionExpression": Key("gsi2pk").eq(f"COST#DAY#{day}")}
        items.extend(query_all(target.monitoring_table, **kwargs))
    by_model: dict[str, float] = defaultdict(float)
    for item in items:
        if item.get("kind") == "llm":
            by_model[str(item.get("model") or "unknown")] += float(item.get("cost_usd", 0) or 0)
    return {
        "window_days": days,
        "total_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in items), 8),
        "lambda": lambda_cost_sources(items),
        "by_agent": _sum_by(items, "agent"),
        "by_kind": _sum_by(items, "kind"),
        "by_model": {k: round(v, 8) for k, v in sorted(by_model.items())},
        "by_incident": _sum_by([i for i in items if i.get("incident_id")], "incident_id"),
        "by_day": _sum_by(items, "day"),
        "budget": budget(target),
    }


def lambda_cost_sources(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda cost records by source: billed (from REPORT lines) or still the in-handler estimate."""
    lambdas = [i for i in items if i.get("kind") == "lambda"]
    billed = [i for i in lambdas if i.get("cost_source") == "billed"]
    estimated = [i for i in lambdas if i.get("cost_source") != "billed"]
    return {
        "total_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in lambdas), 12),
        "billed_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in billed), 12),
        "billed_invocations": len(billed),
        "estimated_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in estimated), 12),
        "awaiting_report": len(estimated),
        # What the handlers had estimated for the invocations that are billed now (the init phase is the gap).
        "billed_estimate_usd": round(sum(float(i.get("estimated_usd", 0) or 0) for i in billed), 12),
    }


def budget(target: Target) -> dict[str, Any]:
    """Today's LLM budget as the Manager's guard sees it; the limit is the SSM parameter."""
    limit = _budget_limit(target)
    status = BudgetGuard(target.monitoring_table, limit_usd=limit or 0.0).budget_status()
    used = status.spent_usd + status.reserved_usd
    return {
        "period": status.period,
        "limit_usd": limit,
        "spent_usd": status.spent_usd,
        "reserved_usd": status.reserved_usd,
        "used_percent": round(used / limit * 100, 2) if limit else None,
    }


def _budget_limit(target: Target) -> float | None:
    name = "daily-llm-budget-usd"
    try:
        value = target.client("ssm").get_parameter(Name=f"{names.parameter_prefix(target.env)}{name}")
    except ClientError:  # not deployed (or not readable): the limit is unknown, the spend is still shown
        return None
    return parse_parameters({name: value["Parameter"]["Value"]}).daily_llm_budget_usd


def analyze(target: Target, hours: int = 24) -> dict[str, Any]:
    """The AgentOps analyzer's report: collaboration, effectiveness, optimizations, open incidents."""
    settings = Settings(
        environment=target.env,
        event_bus_name=target.bus,
        decisions_table_name=target.decisions_table,
        monitoring_table_name=target.monitoring_table,
        idempotency_table_name=names.idempotency_table_name(target.env),
        artifacts_bucket=target.output("ArtifactsBucketName") or f"selfheal-{target.env}-artifacts",
        alerts_topic_arn=target.alerts_topic_arn
        or f"arn:aws:sns:{target.region}:000000000000:{names.alerts_topic_name(target.env)}",
        secret_name=names.secret_name(target.env),
        parameter_prefix=names.parameter_prefix(target.env),
    )
    analyzer = AgentOpsAnalyzer(settings)
    window_days = max(hours, 24)
    return _jsonable(
        {
            "window_hours": hours,
            "collaboration": analyzer.analyze_collaboration_patterns(time_window_hours=hours),
            "effectiveness": {
                agent: analyzer.analyze_agent_effectiveness(agent, time_window_hours=window_days)
                for agent in names.AGENTS
            },
            "optimization_opportunities": analyzer.identify_optimization_opportunities(time_window_hours=window_days),
            "open_incidents_by_status": analyzer.open_incidents_by_status(),
            "duplicate_storms": analyzer.duplicate_storms(time_window_hours=hours),
        }
    )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def rejected(target: Target, days: int = 7, limit: int | None = None) -> list[dict[str, Any]]:
    out = []
    for item in RejectionLog(target.monitoring_table).list(days=days, limit=limit):
        out.append(
            {
                k: item.get(k)
                for k in ("rejected_at", "agent", "detail_type", "source", "event_id", "reason", "raw", "truncated")
            }
        )
    return out


def notifications(target: Target, limit: int = 50) -> list[dict[str, Any]]:
    if target.local:
        items = local_control(target, "notifications").get("notifications", [])
        return items[-limit:]
    raise OperatorError(
        "on AWS, notifications are delivered to the topic's subscribers (email); "
        "`aws cloudwatch describe-alarm-history` shows alarm state changes"
    )
