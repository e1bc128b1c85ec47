"""Names, limits and runtime choices shared by every stack (one place to change them)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64
PIP_PLATFORM = "manylinux2014_x86_64"
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
TARGET_RETRY_ATTEMPTS = 4
TARGET_MAX_EVENT_AGE = Duration.hours(2)
ASYNC_RETRY_ATTEMPTS = 2
SCAN_RATE = Duration.minutes(5)

AGENT_SOURCES = {
    "manager": "agentops.manager",
    "engineer": "agentops.engineer",
    "qa": "agentops.qa",
    "operator": "agentops.operator",
}

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
    return f"selfheal/{env_name}/api-keys"


def function_name(env_name: str, agent: str) -> str:
    return f"selfheal-{env_name}-{agent}"


def artifacts_bucket_name(env_name: str) -> str:
    """Deterministic (account and region make it globally unique) so policies need no cross-stack token."""
    from aws_cdk import Aws

    return f"selfheal-{env_name}-artifacts-{Aws.ACCOUNT_ID}-{Aws.REGION}"
