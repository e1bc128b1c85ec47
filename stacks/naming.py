"""Resource names derived from the environment: the one definition used by the stacks and the CLI.

No aws_cdk import here: the CLI imports this and must start fast.
"""

from __future__ import annotations

AGENTS = ("manager", "engineer", "qa")
AGENT_SOURCES = {
    "manager": "agentops.manager",
    "engineer": "agentops.engineer",
    "qa": "agentops.qa",
    "operator": "agentops.operator",
}
# Only the approvals function may send agentops.operator (bus policy); `selfheal inject` reports
# issues under its own source, like any other producer.
OPERATOR_SOURCE = AGENT_SOURCES["operator"]
INJECT_SOURCE = "selfheal.cli"

# Our own monitoring alarms carry this prefix; the Manager ignores them (no feedback loop).
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


def secret_name(env_name: str) -> str:
    """AgentOps key, readable by every agent (`{"agentops_api_key": …}`)."""
    return f"selfheal/{env_name}/agentops"


def anthropic_secret_name(env_name: str) -> str:
    """Anthropic key, readable by the Engineer only (`{"anthropic_api_key": …}`)."""
    return f"selfheal/{env_name}/anthropic"


def function_name(env_name: str, agent: str) -> str:
    return f"selfheal-{env_name}-{agent}"


def archive_name(env_name: str) -> str:
    """EventBridge archive of the agents bus (replays)."""
    return f"selfheal-{env_name}-agents"


def audit_log_group_name(env_name: str) -> str:
    """Every bus event, as delivered (the audit trail; `selfheal tail` follows it)."""
    return f"/selfheal/{env_name}/events"


def alerts_topic_name(env_name: str) -> str:
    return f"selfheal-{env_name}-alerts"


def stack_names(env_name: str) -> dict[str, str]:
    prefix = f"Selfheal-{env_name}"
    return {"data": f"{prefix}-Data", "pipeline": f"{prefix}-Pipeline", "monitoring": f"{prefix}-Monitoring"}


# The sample workload (context key `sampleWorkload`): a function for Selfheal to heal in demos.
# Its alarm must not carry ALARM_PREFIX, or the Manager would ignore it.
SAMPLE_SERVICE = "sample-orders"


def sample_stack_name(env_name: str) -> str:
    return f"Selfheal-{env_name}-Sample"


def sample_function_name(env_name: str) -> str:
    return f"{SAMPLE_SERVICE}-{env_name}"


def sample_alarm_name(env_name: str) -> str:
    return f"{SAMPLE_SERVICE}-errors-{env_name}"
