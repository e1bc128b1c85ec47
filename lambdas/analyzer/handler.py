"""Analyzer Lambda (hourly schedule): read the tables through their GSIs, publish AgentOps/Anomalies/*."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from agentops_monitoring.analyzer import AgentOpsAnalyzer
from agentops_monitoring.emf import MetricSink
from selfheal_core.config import get_settings
from selfheal_core.observability import logger, traced

from .logic import run_hourly

settings = get_settings()
sink = MetricSink()


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = run_hourly(AgentOpsAnalyzer(settings), sink, settings.environment)
    logger.info("analysis", extra={"result": result})
    return {
        "flow_anomalies": len(result["flow_anomalies"]),
        "rejection_loops": len(result["rejection_loops"]),
        "duplicate_storms": len(result["duplicate_storms"]),
        "opportunities": len(result["opportunities"]),
    }
