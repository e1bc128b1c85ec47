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
# Every function that carries the core layer: pydantic otherwise reads the entry points of every
# installed distribution, on the first validator it builds, to find plugins; none ship.
CORE_ENVIRONMENT = {"PYDANTIC_DISABLE_PLUGINS": "1"}

# Names live in the layer's catalog (no CDK import, shared with the agents and the CLI); re-exported for the stacks.
from selfheal_core.catalog import (  # noqa: E402,F401
    AGENT_SOURCES,
    ALARM_PREFIX,
    PIPELINE_SOURCE_PREFIX,
    alerts_topic_name,
    anthropic_secret_name,
    archive_name,
    audit_log_group_name,
    bus_name,
    decisions_table_name,
    function_name,
    idempotency_table_name,
    monitoring_table_name,
    parameter_prefix,
    secret_name,
    stack_names,
    validations_table_name,
)


def artifacts_bucket_name(env_name: str) -> str:
    """Deterministic (account and region make it globally unique) so policies need no cross-stack token."""
    from aws_cdk import Aws

    return f"selfheal-{env_name}-artifacts-{Aws.ACCOUNT_ID}-{Aws.REGION}"
