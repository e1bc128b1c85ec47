"""QA Lambda: FixProposed in, FixValidated or FixRejected (with evidence) out."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agentops_monitoring import AgentOpsMonitor
from selfheal_core.agent import agent_handler
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.bus import EventPublisher
from selfheal_core.config import get_settings
from selfheal_core.events import DetailType, Fix, Investigation
from selfheal_core.incidents import IncidentStore
from selfheal_core.messaging import Messenger
from selfheal_core.validations import ValidationStore

from . import logic
from .validators.base import Validator
from .validators.policy import PolicyValidator

if TYPE_CHECKING:  # the runner and its models (selfheal_core.qa_run) load only for code fixes
    from .validators.runner import Runner

settings = get_settings()
monitor = AgentOpsMonitor(logic.AGENT, settings=settings)


def make_runner() -> Runner:
    """QA never runs fix code itself: every run is an invocation of the isolated runner function."""
    from .validators.runner import LambdaRunner

    return LambdaRunner(os.environ["QA_RUNNER_FUNCTION_NAME"])


def validator_for(fix: Fix, investigation: Investigation | None = None) -> Validator:
    if fix.kind == "config":
        return PolicyValidator(investigation=investigation)
    from .validators.code import CodeValidator  # loaded only for code fixes

    return CodeValidator(make_runner(), on_run=monitor.record_qa_run)


def ports(context: Any) -> logic.QaPorts:
    return logic.QaPorts(
        incidents=IncidentStore(settings.decisions_table_name, on_transition=monitor.record_status),
        monitor=monitor,
        messenger=Messenger(logic.AGENT, EventPublisher(settings.event_bus_name, logic.SOURCE), monitor),
        artifacts=ArtifactStore(settings.artifacts_bucket),
        validator_for=validator_for,
        verdicts=ValidationStore(settings.validations_table_name, settings.decisions_table_name),
    )


handler = agent_handler(
    logic.AGENT,
    {
        DetailType.FIX_PROPOSED: lambda call: logic.handle_fix_proposed(call.metadata, call.data, call.ports),
    },
    settings=settings,
    monitor=monitor,
    ports=ports,
    label="QA",
)
