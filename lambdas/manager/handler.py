"""Manager Lambda: parse at the edge, one logic call, emit. Inputs: alarms, IssueReported, scans, outcomes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentops_monitoring import AgentOpsMonitor, instrument
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.bus import EventPublisher
from selfheal_core.config import get_runtime_parameters, get_settings
from selfheal_core.edge import idempotency, reject, screened, step_validator
from selfheal_core.events import DetailType, InvalidEvent, parse_detail
from selfheal_core.incidents import IncidentStore
from selfheal_core.messaging import Messenger
from selfheal_core.observability import CORRELATION_ID_PATH, logger, metrics, traced

from . import heal, logic, sweep
from .intake import ALARM_DETAIL_TYPE, SCHEDULED_DETAIL_TYPE, delivery_key, parse_alarm, parse_issue_reported
from .scan import scan_lambda_metrics

RESUME_INPUT_TOKENS, RESUME_OUTPUT_TOKENS = 30_000, 4_096
settings = get_settings()
monitor = AgentOpsMonitor(logic.AGENT, settings=settings)
persistence, idempotency_config = idempotency(settings)



def ports() -> logic.ManagerPorts:
    return logic.ManagerPorts(
        incidents=IncidentStore(settings.decisions_table_name, on_transition=monitor.record_incident),
        monitor=monitor,
        messenger=Messenger(logic.AGENT, EventPublisher(settings.event_bus_name, logic.SOURCE), monitor),
        params=get_runtime_parameters(settings),
        artifacts=ArtifactStore(settings.artifacts_bucket),
        schedules=heal.ScheduleTarget(settings.environment, settings.event_bus_arn, settings.scheduler_role_arn),
    )


# Due events are guarded by conditional writes on the incident's change id and phase instead of
# the idempotency store: a due event that came early is answered "not due" and must not become
# the cached answer to the schedule that fires on time with the same content.
DUE_TYPES = frozenset({DetailType.APPLY_DUE.value, DetailType.VERIFY_DUE.value})


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
@instrument(monitor)
@screened(agent=logic.AGENT, settings=settings, monitor=monitor, validate=lambda event: validate(event))
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("detail-type") in DUE_TYPES:
        return _handle(event)
    return _idempotent_handler(event, context)


@idempotent(persistence_store=persistence, config=idempotency_config)
def _idempotent_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _handle(event)


def _handle(event: dict[str, Any]) -> dict[str, Any]:
    try:
        return route(event, ports())
    except InvalidEvent as exc:
        return reject(event, exc.reason, agent=logic.AGENT, settings=settings, monitor=monitor)


STEP_TYPES = frozenset({DetailType.FIX_VALIDATED.value, DetailType.REMEDIATION_FAILED.value,
                        DetailType.APPROVAL_GRANTED.value, DetailType.APPROVAL_DENIED.value, *DUE_TYPES})


def validate(event: dict[str, Any]) -> None:
    """What route() would refuse, refused before idempotency caches an answer under its key."""
    detail_type = event.get("detail-type")
    if detail_type == DetailType.ISSUE_REPORTED.value:
        parse_issue_reported(event)
    elif detail_type == ALARM_DETAIL_TYPE:
        parse_alarm(event)
    elif detail_type != SCHEDULED_DETAIL_TYPE:
        step_validator("the Manager", STEP_TYPES)(event)


def route(event: dict[str, Any], p: logic.ManagerPorts) -> dict[str, Any]:  # noqa: C901 - the agent skeleton (#12) turns it into a table
    detail_type = event.get("detail-type") if isinstance(event, dict) else None
    correlation_id = str(event.get("id") or "") if isinstance(event, dict) else ""
    if detail_type == DetailType.ISSUE_REPORTED.value:
        intake = parse_issue_reported(event)
        return logic.handle_intake(intake, p, correlation_id=intake.issue.idempotency_key or correlation_id,
                                   delivery_id=delivery_key(event), replayed="replay-name" in event)
    if detail_type == ALARM_DETAIL_TYPE:
        return logic.handle_intake(parse_alarm(event), p, correlation_id=correlation_id)
    if detail_type == SCHEDULED_DETAIL_TYPE:
        results = [
            logic.handle_intake(intake, p, correlation_id=f"{correlation_id}:{intake.issue.service}")
            for intake in scan_lambda_metrics(p.params.scan_thresholds, exclude_prefix=f"selfheal-{settings.environment}-")
        ]
        # Resume only when one worst-case Engineer call fits, else every scan would pause it again.
        one_call = monitor.price_call(SimpleNamespace(model=p.params.engineer_model, input_tokens=RESUME_INPUT_TOKENS,
                                                      output_tokens=RESUME_OUTPUT_TOKENS))
        remaining = monitor.budget_guard().budget_status().remaining_usd
        scan_time, watched = heal.now(), sweep.open_incidents(p.incidents)
        resumed = logic.resume_budget_paused(p, watched, budget_remaining_usd=remaining if remaining >= one_call else 0.0)
        retried = logic.resume_after_provider_wait(p, watched, now=scan_time)
        swept = heal.sweep_overdue(p, watched)  # heal steps whose one-time schedule never delivered
        stuck = sweep.sweep_stuck(p, watched, now=scan_time)
        return {"action": "scanned", "results": results, "resumed": resumed, "retried": retried, "swept": swept,
                "stuck": [f"{o['incident_id']} {o['action']}" for o in stuck]}
    if not isinstance(detail_type, str):
        raise InvalidEvent("event has no detail-type")
    envelope = parse_detail(detail_type, event.get("detail"), source=event.get("source", ""), event_id=event.get("id"))
    monitor.bind(incident_id=envelope.metadata.incident_id, correlation_id=envelope.metadata.correlation_id)
    if detail_type == DetailType.FIX_VALIDATED.value:
        outcome = logic.handle_fix_validated(envelope.metadata, envelope.data, p, replayed="replay-name" in event)
        if outcome["action"] == "refused":  # listed by `selfheal rejected`, counted as a rejected event
            reject(event, f"FixValidated refused: {outcome['reason']}", agent=logic.AGENT, settings=settings, monitor=monitor)
        return outcome
    if detail_type == DetailType.REMEDIATION_FAILED.value:
        return logic.handle_remediation_failed(envelope.metadata, envelope.data, p, replayed="replay-name" in event)
    if detail_type == DetailType.APPLY_DUE.value:
        return heal.handle_apply_due(envelope.metadata, envelope.data, p)
    if detail_type == DetailType.VERIFY_DUE.value:
        return heal.handle_verify_due(envelope.metadata, envelope.data, p)
    if detail_type in (DetailType.APPROVAL_GRANTED.value, DetailType.APPROVAL_DENIED.value):
        return logic.handle_approval(envelope.metadata, envelope.data, detail_type == DetailType.APPROVAL_GRANTED.value, p)
    raise InvalidEvent(f"the Manager does not handle {detail_type!r}")
