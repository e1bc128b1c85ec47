"""Selfheal's shared vocabulary, defined once: resource names, incident statuses, event sources,
routes and recipients, and the defaults of every setting (docs/architecture.md, "Where each concept lives").

Plain data with no AWS, CDK or pydantic import: the stacks, the agents, the CLI, the local
runtime, the bench and the tests all import this module instead of keeping their own copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

# ------------------------------------------------------------------------------ agents and sources

AGENTS = ("manager", "engineer", "qa")
# Each agent function's timeout (the stacks deploy it; the sweeper derives its allowances from it).
AGENT_TIMEOUT_S = {"manager": 30, "engineer": 180, "qa": 180}
OPERATOR = "operator"  # people: approvals come from them, notifications go to them
AGENT_SOURCES = {
    "manager": "agentops.manager",
    "engineer": "agentops.engineer",
    "qa": "agentops.qa",
    OPERATOR: "agentops.operator",
}
# Only the approvals function may send agentops.operator (bus policy); `selfheal inject` reports
# issues under its own source, like any other producer.
OPERATOR_SOURCE = AGENT_SOURCES[OPERATOR]
INJECT_SOURCE = "selfheal.cli"

# Our own monitoring alarms carry this prefix; the Manager ignores them (no feedback loop).
ALARM_PREFIX = "selfheal-"

# ------------------------------------------------------------------------------ resource names


def bus_name(env_name: str) -> str:
    return f"agentops-{env_name}"


def decisions_table_name(env_name: str) -> str:
    return f"agent-decisions-{env_name}"


def validations_table_name(env_name: str) -> str:
    """QA's verdicts: written by QA's role only, read by the Manager (an IAM guarantee)."""
    return f"agent-validations-{env_name}"


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


# Every Selfheal function of every environment starts with this: never a target to change.
OWN_FUNCTION_PREFIX = "selfheal-"


def function_name(env_name: str, agent: str) -> str:
    return f"{OWN_FUNCTION_PREFIX}{env_name}-{agent}"


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


# ------------------------------------------------------------------------------ incident statuses


class Status(StrEnum):
    DETECTED = "DETECTED"
    REMEDIATING = "REMEDIATING"
    FIX_PROPOSED = "FIX_PROPOSED"
    VALIDATING = "VALIDATING"
    VALIDATED = "VALIDATED"
    APPROVED = "APPROVED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    RESOLVED = "RESOLVED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    ESCALATED = "ESCALATED"
    BUDGET_PAUSED = "BUDGET_PAUSED"
    SCHEDULED = "SCHEDULED"  # approved config change waiting for its service's low-traffic window
    VERIFYING = "VERIFYING"  # change applied; waiting for the alarm (or metric) to recover
    ROLLED_BACK = "ROLLED_BACK"  # no recovery: previous values restored (escalated next)
    PATCH_READY = "PATCH_READY"  # validated code patch kept for a person to merge; resolves on alarm OK
    RETRY_WAIT = "RETRY_WAIT"  # the model provider was unreachable; the scheduled scan resumes it


# The incident is over: nothing moves it again (a new report with its fingerprint opens a new one).
TERMINAL = frozenset({Status.RESOLVED, Status.FAILED, Status.ESCALATED})
OPEN_STATUSES = frozenset(Status) - TERMINAL
# Nothing inside the pipeline is working on these: they end, or wait for a person, the budget,
# the provider or the clock (the scheduled scan resumes those; one-time schedules end the apply
# window and the verification, a person merges a ready patch). A run is "quiet" when every
# incident is SETTLED; AWAITING_APPROVAL is settled, never final.
SETTLED = TERMINAL | {
    Status.AWAITING_APPROVAL,
    Status.BUDGET_PAUSED,
    Status.RETRY_WAIT,
    Status.SCHEDULED,
    Status.VERIFYING,
    Status.PATCH_READY,
}

# ------------------------------------------------------------------------------ routes and recipients


@dataclass(frozen=True)
class Route:
    rule_id: str
    description: str
    detail_types: tuple[str, ...]
    sources: tuple[str, ...] | None  # None = any producer
    agent: str


_S = AGENT_SOURCES
# Agent-to-agent flow (docs/architecture.md, "The flow"): one EventBridge rule each. IssueReported
# may come from any producer; every other step only from the agent that owns it.
AGENT_ROUTES = (
    Route("IssueReported", "Injected issues to the Manager", ("IssueReported",), None, "manager"),
    Route(
        "RemediationRequested",
        "Manager asks the Engineer for a fix",
        ("RemediationRequested",),
        (_S["manager"],),
        "engineer",
    ),
    Route("FixProposed", "Engineer hands a fix to QA", ("FixProposed",), (_S["engineer"],), "qa"),
    Route("FixRejected", "QA sends a rejected fix back to the Engineer", ("FixRejected",), (_S["qa"],), "engineer"),
    Route("FixValidated", "QA reports a validated fix to the Manager", ("FixValidated",), (_S["qa"],), "manager"),
    Route(
        "RemediationFailed",
        "Engineer gives up; the Manager closes",
        ("RemediationFailed",),
        (_S["engineer"], _S["qa"]),
        "manager",
    ),
    Route(
        "OperatorApproval",
        "Human approval decisions to the Manager",
        ("ApprovalGranted", "ApprovalDenied"),
        (_S["operator"],),
        "manager",
    ),
    # Sent by the one-time EventBridge Scheduler schedules the Manager creates (window start, verify end).
    Route(
        "HealSchedules",
        "Apply and verify due times to the Manager",
        ("ApplyDue", "VerifyDue"),
        (_S["manager"],),
        "manager",
    ),
)
# The pipeline's own events (agents, approvals, the Manager's schedules) all carry this source prefix.
PIPELINE_SOURCE_PREFIX = "agentops."
# What a producer may send: the detail-types any source may put on the bus.
PRODUCER_DETAIL_TYPES = tuple(t for route in AGENT_ROUTES if route.sources is None for t in route.detail_types)
# The Unrouted rule: a producer's event no route takes (`issueReported`, a step from a source the
# contract does not name), i.e. any detail-type but these from any source without that prefix,
# goes to the Manager, which refuses it with the reason (`selfheal rejected`) instead of it
# vanishing. Never the pipeline's own events: no loop, and informational events (IssueDetected,
# FixApplied, ...) are for dependants, not refusals.
UNROUTED_RULE_ID = "Unrouted"
# Events people must read: delivered to the alerts topic (email).
NOTIFY_DETAIL_TYPES = ("ApprovalRequested", "IncidentEscalated", "FixRolledBack")
NOTIFY_SOURCES = (_S["manager"], _S["engineer"])

# detail-type -> who consumes it (collaboration metrics, `selfheal history`).
RECIPIENTS: dict[str, str] = {
    **{detail_type: route.agent for route in AGENT_ROUTES for detail_type in route.detail_types},
    **dict.fromkeys(NOTIFY_DETAIL_TYPES, OPERATOR),
}
# detail-type -> the only sources that may send it (the bus rules and IAM say the same; handlers
# check it too, so a mis-scoped rule or role is not enough to forge a step).
CONTRACT_SOURCES: dict[str, frozenset[str]] = {
    detail_type: frozenset(route.sources)
    for route in AGENT_ROUTES
    if route.sources
    for detail_type in route.detail_types
}

# ------------------------------------------------------------------------------ settings and defaults

AutomationLevel = Literal["manual", "semi_auto", "full_auto"]
Provider = Literal["runbook", "anthropic", "bedrock"]
AUTOMATION_LEVELS: tuple[str, ...] = get_args(AutomationLevel)
PROVIDERS: tuple[str, ...] = get_args(Provider)

# A test fails when a default model is missing from the price table.
DEFAULT_ENGINEER_MODEL = "claude-sonnet-4-6"
DEFAULT_MANAGER_MODEL = "claude-haiku-4-5"
DEFAULT_AUTOMATION_LEVEL: AutomationLevel = "semi_auto"
DEFAULT_PROVIDER: Provider = "runbook"
DEFAULT_MAX_FIX_ATTEMPTS = 3
DEFAULT_DAILY_LLM_BUDGET_USD = 5.0
# The largest daily LLM budget accepted (SSM and CDK context): above it is a typo or an attempt at "no limit".
MAX_DAILY_LLM_BUDGET_USD = 10_000.0
DEFAULT_VERIFY_WINDOW_SECONDS = 900
# Metric-scan thresholds (the `scan-thresholds` SSM parameter).
DEFAULT_SCAN_THRESHOLDS = {"error_rate_pct": 5.0, "latency_p95_ms": 3_000.0, "throttles": 10.0}
# service -> "any" or ["HH:MM-HH:MM", ...] (UTC); "*" covers every other service.
DEFAULT_APPLY_WINDOWS: dict[str, str | list[str]] = {"*": "any"}

# CDK context key -> default. These are every key a deployment may set (`-c key=value`); any other
# bare key is a typo and synth refuses it (stacks/settings.py). The SSM parameters start from them.
CONTEXT_DEFAULTS: dict[str, object] = {
    "environment": "dev",
    "alertEmail": "",
    "costAlertThreshold": 10.0,
    "dailyLlmBudgetUsd": DEFAULT_DAILY_LLM_BUDGET_USD,
    "automationLevel": DEFAULT_AUTOMATION_LEVEL,
    "engineerProvider": DEFAULT_PROVIDER,
    "engineerModel": DEFAULT_ENGINEER_MODEL,
    "managerModel": DEFAULT_MANAGER_MODEL,
    "maxFixAttempts": DEFAULT_MAX_FIX_ATTEMPTS,
    "verifyWindowSeconds": DEFAULT_VERIFY_WINDOW_SECONDS,
    "archiveRetentionDays": 30,
    # QA runner: an existing VPC (and its comma-separated subnets) instead of the isolated one the stack creates.
    "qaRunnerVpcId": "",
    "qaRunnerSubnetIds": "",
    # Run fix code where neither namespaces nor a microVM isolate it (local runtime only).
    "allowUnisolatedQa": False,
    "anthropicBaseUrl": "",
    "sampleWorkload": False,
}
# Set only by the local runtime's synth (selfheal_dev/local/synth.py): this app will not be deployed.
LOCAL_SYNTH_MARKER = "selfheal:localSynth"

# A Selfheal key is a bare camelCase word; CDK's own keys (`@aws-cdk/...` feature flags,
# `aws:cdk:...`, lookups such as `availability-zones:account=...`) never are, so they pass.
_SETTING_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def unknown_context_problem(keys: Iterable[str]) -> str | None:
    """Why these context keys are refused (a typo such as `engineerProvidr`), or None when all are known."""
    unknown = sorted(k for k in keys if _SETTING_KEY.fullmatch(k) and k not in CONTEXT_DEFAULTS)
    if not unknown:
        return None
    return f"unknown context key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(CONTEXT_DEFAULTS))}"
