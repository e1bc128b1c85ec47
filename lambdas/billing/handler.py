"""Cost reconciler Lambda: the agents' REPORT lines in (CloudWatch Logs subscription), billed Lambda cost out.

Failures raise: Lambda retries the delivery (asynchronous invocation) and then sends it to this
function's on-failure queue, so no batch of REPORT lines is lost; a retried batch is harmless
because every line is reconciled at most once (see agentops_monitoring/billing.py).
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from agentops_monitoring.billing import BilledCostReconciler
from agentops_monitoring.costs import load_price_table
from selfheal_core.observability import logger

PARAMETER_PREFIX = os.environ.get("PARAMETER_PREFIX") or None
PARAMETERS_MAX_AGE = int(os.environ.get("PARAMETERS_MAX_AGE", "60"))

reconciler = BilledCostReconciler(
    environment=os.environ["ENVIRONMENT"],
    monitoring_table=os.environ["MONITORING_TABLE_NAME"],
    decisions_table=os.environ["DECISIONS_TABLE_NAME"],
    prices=lambda: load_price_table(parameter_prefix=PARAMETER_PREFIX, max_age=PARAMETERS_MAX_AGE),
    agents_by_log_group=json.loads(os.environ["AGENT_LOG_GROUPS"]),
    architecture=os.environ.get("AGENT_ARCHITECTURE", "x86_64"),
)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    counts = reconciler.handle(event)
    logger.info("REPORT lines reconciled", extra={"counts": counts})
    return counts
