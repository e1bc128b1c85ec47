"""Engineer Lambda: RemediationRequested / FixRejected in, FixProposed or RemediationFailed out."""

from __future__ import annotations

from functools import partial
from typing import Any

from agentops_monitoring import AgentOpsMonitor
from agentops_monitoring.budget import notify_budget_paused
from selfheal_core.agent import agent_handler
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.bus import EventPublisher
from selfheal_core.config import get_runtime_parameters, get_settings
from selfheal_core.events import DetailType
from selfheal_core.incidents import IncidentStore
from selfheal_core.messaging import Messenger

from . import logic
from .proposals import ProposalStore
from .providers.select import api_keys, choose_provider

settings = get_settings()
monitor = AgentOpsMonitor(logic.AGENT, settings=settings)


def ports(context: Any) -> logic.EngineerPorts:
    params = get_runtime_parameters(settings)
    return logic.EngineerPorts(
        incidents=IncidentStore(settings.decisions_table_name, on_transition=monitor.record_status),
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


handler = agent_handler(
    logic.AGENT,
    {
        DetailType.REMEDIATION_REQUESTED: lambda call: logic.handle_remediation_requested(
            call.metadata, call.data, call.ports
        ),
        DetailType.FIX_REJECTED: lambda call: logic.handle_fix_rejected(call.metadata, call.data, call.ports),
    },
    settings=settings,
    monitor=monitor,
    ports=ports,
    label="the Engineer",
)
