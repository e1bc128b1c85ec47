"""QA runner Lambda: a bundle in (one tree, its commands, limits), the run's result out.

Invoked synchronously by QA only, with a fresh tenant id per run (PER_TENANT isolation: an
execution environment never serves two runs). Its role may write its own logs and nothing
else, and it sits in a VPC with no route out: what runs here can reach nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from . import logic

logger = Logger(service="qa-runner")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        reply = logic.run_bundle(event)
    except ValidationError as exc:
        logger.warning("bundle refused", extra={"errors": exc.error_count()})
        return {
            "isolation": logic.isolation_mode(),
            "refused": f"invalid bundle: {exc.error_count()} error(s)",
            "steps": [],
        }
    logger.info(
        "bundle run",
        extra={
            "isolation": reply["isolation"],
            "refused": reply["refused"],
            "steps": [
                {"check": s["check"], "exit_code": s["exit_code"], "duration_ms": s["duration_ms"]}
                for s in reply["steps"]
            ],
        },
    )
    return reply
