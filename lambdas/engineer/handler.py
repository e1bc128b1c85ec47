"""Engineer Lambda: RemediationRequested / FixRejected in, FixProposed or RemediationFailed out."""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentops_monitoring import AgentOpsMonitor, instrument
from agentops_monitoring.budget import notify_budget_paused
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.bus import EventPublisher
from selfheal_core.config import get_runtime_parameters, get_settings
from selfheal_core.edge import idempotency, screened, step_validator
from selfheal_core.events import DetailType, parse_detail
from selfheal_core.incidents import IncidentStore
from selfheal_core.messaging import Messenger
from selfheal_core.observability import CORRELATION_ID_PATH, logger, metrics, traced

from . import logic
from .proposals import ProposalStore
from .providers.select import api_keys, choose_provider

settings = get_settings()
monitor = AgentOpsMonitor(logic.AGENT, settings=settings)
persistence, idempotency_config = idempotency(settings)

HANDLED = frozenset({DetailType.REMEDIATION_REQUESTED.value, DetailType.FIX_REJECTED.value})


def ports(context: LambdaContext) -> logic.EngineerPorts:
    params = get_runtime_parameters(settings)
    return logic.EngineerPorts(
        incidents=IncidentStore(settings.decisions_table_name, on_transition=monitor.record_incident),
        monitor=monitor,
        messenger=Messenger(logic.AGENT, EventPublisher(settings.event_bus_name, logic.SOURCE), monitor),
        params=params,
        artifacts=ArtifactStore(settings.artifacts_bucket),
        proposals=ProposalStore(settings.decisions_table_name),
        choose_provider=partial(
            choose_provider,
            params=params,
            keys=lambda: api_keys(settings.anthropic_secret_name) if settings.anthropic_secret_name else {},
            monitor=monitor,
            remaining_time_s=lambda: context.get_remaining_time_in_millis() / 1000,
        ),
        notify_budget_paused=partial(notify_budget_paused, settings.alerts_topic_arn),
    )


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
@instrument(monitor)
@screened(agent=logic.AGENT, settings=settings, monitor=monitor, validate=step_validator("the Engineer", HANDLED))
@idempotent(persistence_store=persistence, config=idempotency_config)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail_type = event["detail-type"]  # screened: a detail-type we handle, from its source, valid
    envelope = parse_detail(detail_type, event.get("detail"), source=event.get("source", ""), event_id=event.get("id"))
    if detail_type == DetailType.REMEDIATION_REQUESTED.value:
        return logic.handle_remediation_requested(envelope.metadata, envelope.data, ports(context))
    return logic.handle_fix_rejected(envelope.metadata, envelope.data, ports(context))
