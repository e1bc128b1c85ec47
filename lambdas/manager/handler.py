"""Manager Lambda: the route table. Inputs: alarms, IssueReported, scans, outcomes, approvals, due heal steps."""

from __future__ import annotations

from typing import Any

from agentops_monitoring import AgentOpsMonitor
from selfheal_core.agent import Call, Route, agent_handler
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.bus import EventPublisher
from selfheal_core.config import get_runtime_parameters, get_settings
from selfheal_core.events import DetailType
from selfheal_core.incidents import IncidentStore
from selfheal_core.messaging import Messenger
from selfheal_core.validations import ValidationStore

from . import heal, logic, sweep
from .home import Home
from .intake import (
    ALARM_DETAIL_TYPE,
    SCHEDULED_DETAIL_TYPE,
    alarm_elsewhere,
    delivery_key,
    parse_alarm,
    parse_issue_reported,
    parse_scheduled,
)
from .scan import scan_lambda_metrics

settings = get_settings()
monitor = AgentOpsMonitor(logic.AGENT, settings=settings)


def ports(context: Any) -> logic.ManagerPorts:
    return logic.ManagerPorts(
        incidents=IncidentStore(settings.decisions_table_name, on_transition=monitor.record_status),
        monitor=monitor,
        messenger=Messenger(logic.AGENT, EventPublisher(settings.event_bus_name, logic.SOURCE), monitor),
        params=get_runtime_parameters(settings),
        artifacts=ArtifactStore(settings.artifacts_bucket),
        verdicts=ValidationStore(settings.validations_table_name, settings.decisions_table_name),
        schedules=heal.ScheduleTarget(settings.environment, settings.event_bus_arn, settings.scheduler_role_arn),
        home=Home.of_context(context),
    )


def intake_of(call: Call) -> dict[str, Any]:
    """How handle_intake and fold_duplicate name this delivery. EventBridge always gives an event
    id; a direct invoke may not, and then the delivery's content names it."""
    event_id = call.correlation_id or delivery_key(call.event)
    if call.event.get("detail-type") == ALARM_DETAIL_TYPE:
        return {"correlation_id": event_id}
    return {
        "correlation_id": call.parsed.issue.idempotency_key or event_id,
        "delivery_id": delivery_key(call.event),
        "replayed": call.replayed,
    }


def intake(call: Call) -> dict[str, Any]:
    return logic.handle_intake(call.parsed, call.ports, **intake_of(call))


def fold_duplicate(call: Call) -> dict[str, Any] | None:
    return logic.fold_duplicate(call.parsed, call.ports, context=call.context, **intake_of(call))


def alarm_first(call: Call) -> dict[str, Any] | None:
    """An alarm of another account or Region is refused (listed by `selfheal rejected`) before
    anything else: its FunctionName names a function there, not our namesake."""
    elsewhere = alarm_elsewhere(call.event, Home.of_context(call.context))
    return call.reject(elsewhere) if elsewhere else fold_duplicate(call)


def scheduled_scan(call: Call) -> dict[str, Any]:
    p = call.ports
    found = scan_lambda_metrics(p.params.scan_thresholds, exclude_prefix=f"selfheal-{settings.environment}-")
    return sweep.handle_scheduled_scan(found, p, correlation_id=call.correlation_id, now=heal.now())


def fix_validated(call: Call) -> dict[str, Any]:
    outcome = logic.handle_fix_validated(call.metadata, call.data, call.ports, replayed=call.replayed)
    if outcome["action"] == "refused":  # listed by `selfheal rejected`, counted as a rejected event
        call.reject(f"FixValidated refused: {outcome['reason']}")
    return outcome


def approval(granted: bool) -> Any:
    return lambda call: logic.handle_approval(call.metadata, call.data, granted, call.ports, replayed=call.replayed)


handler = agent_handler(
    logic.AGENT,
    {
        # A duplicate of an open incident is folded before idempotency, in 2 API calls (logic.fold_duplicate).
        DetailType.ISSUE_REPORTED: Route(intake, parse=parse_issue_reported, first=fold_duplicate),
        ALARM_DETAIL_TYPE: Route(intake, parse=parse_alarm, first=alarm_first),
        SCHEDULED_DETAIL_TYPE: Route(scheduled_scan, parse=parse_scheduled),
        DetailType.FIX_VALIDATED: fix_validated,
        DetailType.REMEDIATION_FAILED: lambda call: logic.handle_remediation_failed(
            call.metadata, call.data, call.ports, replayed=call.replayed
        ),
        DetailType.APPROVAL_GRANTED: approval(granted=True),
        DetailType.APPROVAL_DENIED: approval(granted=False),
        # Due events are guarded by conditional writes on the incident's change id and phase instead of
        # the idempotency store: a due event that came early is answered "not due" and must not become
        # the cached answer to the schedule that fires on time with the same content.
        DetailType.APPLY_DUE: Route(
            lambda call: heal.handle_apply_due(call.metadata, call.data, call.ports), idempotent=False
        ),
        DetailType.VERIFY_DUE: Route(
            lambda call: heal.handle_verify_due(call.metadata, call.data, call.ports), idempotent=False
        ),
    },
    settings=settings,
    monitor=monitor,
    ports=ports,
    label="the Manager",
)
