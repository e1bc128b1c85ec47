"""QA Lambda: FixProposed in, FixValidated or FixRejected (with evidence) out."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentops_monitoring import AgentOpsMonitor, instrument
from selfheal_core.artifacts import ArtifactStore
from selfheal_core.bus import EventPublisher
from selfheal_core.config import get_settings
from selfheal_core.edge import idempotency, screened, step_validator
from selfheal_core.events import DetailType, Fix, Investigation, parse_detail
from selfheal_core.incidents import IncidentStore
from selfheal_core.messaging import Messenger
from selfheal_core.observability import CORRELATION_ID_PATH, logger, metrics, traced

from . import logic
from .validators.base import Validator
from .validators.policy import PolicyValidator
from .validators.runner import Runner

settings = get_settings()
monitor = AgentOpsMonitor(logic.AGENT, settings=settings)
persistence, idempotency_config = idempotency(settings)


def make_runner() -> Runner:
    """QA never runs fix code itself: every run is an invocation of the isolated runner function."""
    from .validators.runner import LambdaRunner

    return LambdaRunner(os.environ["QA_RUNNER_FUNCTION_NAME"])


def validator_for(fix: Fix, investigation: Investigation | None = None) -> Validator:
    if fix.kind == "config":
        return PolicyValidator(investigation=investigation)
    from .validators.code import CodeValidator  # loaded only for code fixes

    return CodeValidator(make_runner(), on_run=monitor.record_qa_run)


def ports() -> logic.QaPorts:
    return logic.QaPorts(
        incidents=IncidentStore(settings.decisions_table_name, on_transition=monitor.record_incident),
        monitor=monitor,
        messenger=Messenger(logic.AGENT, EventPublisher(settings.event_bus_name, logic.SOURCE), monitor),
        artifacts=ArtifactStore(settings.artifacts_bucket),
        validator_for=validator_for,
    )


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
@instrument(monitor)
@screened(agent=logic.AGENT, settings=settings, monitor=monitor,
          validate=step_validator("QA", frozenset({DetailType.FIX_PROPOSED.value})))
@idempotent(persistence_store=persistence, config=idempotency_config)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # screened: a FixProposed from the Engineer, valid
    envelope = parse_detail(event["detail-type"], event.get("detail"), source=event.get("source", ""), event_id=event.get("id"))
    return logic.handle_fix_proposed(envelope.metadata, envelope.data, ports())
