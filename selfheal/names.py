"""Resource names by convention, mirroring stacks/constants.py.

The CLI must start fast, and importing stacks.constants loads aws_cdk (a jsii/node
process); tests/integration/test_local_cli_names.py keeps these in step with the stacks.
"""

from __future__ import annotations

AGENTS = ("manager", "engineer", "qa")
OPERATOR_SOURCE = "agentops.operator"
ALARM_PREFIX = "selfheal-"


def bus_name(env_name: str) -> str:
    return f"agentops-{env_name}"


def decisions_table_name(env_name: str) -> str:
    return f"agent-decisions-{env_name}"


def monitoring_table_name(env_name: str) -> str:
    return f"agent-monitoring-{env_name}"


def idempotency_table_name(env_name: str) -> str:
    return f"selfheal-idempotency-{env_name}"


def parameter_prefix(env_name: str) -> str:
    return f"/selfheal/{env_name}/"


def function_name(env_name: str, agent: str) -> str:
    return f"selfheal-{env_name}-{agent}"


def alerts_topic_name(env_name: str) -> str:
    return f"selfheal-{env_name}-alerts"


def stack_names(env_name: str) -> dict[str, str]:
    prefix = f"Selfheal-{env_name}"
    return {"data": f"{prefix}-Data", "pipeline": f"{prefix}-Pipeline", "monitoring": f"{prefix}-Monitoring"}
