"""CDK context keys (`-c key=value` or cdk.json), validated once for every stack; unknown keys are refused.

The keys and their defaults live in selfheal_core/catalog.py (CONTEXT_DEFAULTS)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selfheal_core.catalog import (
    AUTOMATION_LEVELS,
    CONTEXT_DEFAULTS,
    LOCAL_SYNTH_MARKER,
    MAX_DAILY_LLM_BUDGET_USD,
    PROVIDERS,
    unknown_context_problem,
)
from selfheal_core.config import ConfigError, bedrock_model_id

if TYPE_CHECKING:  # the dev CLI checks `-c` values with this module: no jsii runtime for that
    from constructs import Node


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _strict_flag(value: Any, key: str) -> bool:
    """A boolean context value: JSON true/false from cdk.json, or the string from `-c key=true`."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"invalid CDK context: {key} must be true or false, not {value!r}")


@dataclass(frozen=True)
class DeploySettings:
    env_name: str
    alert_email: str
    cost_alert_threshold: float
    daily_llm_budget_usd: float
    automation_level: str
    engineer_provider: str
    engineer_model: str
    manager_model: str
    max_fix_attempts: int
    verify_window_seconds: int
    archive_retention_days: int
    # QA runner: an existing VPC (and its subnets) instead of the isolated one the stack creates.
    qa_runner_vpc_id: str
    qa_runner_subnet_ids: tuple[str, ...]
    # Run fix code where neither namespaces nor a microVM isolate it (local runtime only).
    allow_unisolated_qa: bool
    local_synth: bool
    anthropic_base_url: str
    sample_workload: bool

    @classmethod
    def from_context(cls, node: Node) -> DeploySettings:
        problem = unknown_context_problem(node.get_all_context())
        if problem:
            raise ValueError(f"invalid CDK context: {problem}")

        def ctx(key: str) -> Any:
            value = node.try_get_context(key)
            return CONTEXT_DEFAULTS.get(key) if value in (None, "") else value

        def number(key: str, kind: type[float] | type[int]) -> Any:
            try:
                return kind(ctx(key))
            except (TypeError, ValueError):
                raise ValueError(f"invalid CDK context: {key} must be a number, not {ctx(key)!r}") from None

        settings = cls(
            env_name=str(ctx("environment")),
            alert_email=str(ctx("alertEmail")),
            cost_alert_threshold=number("costAlertThreshold", float),
            daily_llm_budget_usd=number("dailyLlmBudgetUsd", float),
            automation_level=str(ctx("automationLevel")),
            engineer_provider=str(ctx("engineerProvider")),
            engineer_model=str(ctx("engineerModel")),
            manager_model=str(ctx("managerModel")),
            max_fix_attempts=number("maxFixAttempts", int),
            verify_window_seconds=number("verifyWindowSeconds", int),
            archive_retention_days=number("archiveRetentionDays", int),
            qa_runner_vpc_id=str(ctx("qaRunnerVpcId")),
            qa_runner_subnet_ids=tuple(s.strip() for s in str(ctx("qaRunnerSubnetIds")).split(",") if s.strip()),
            allow_unisolated_qa=_strict_flag(ctx("allowUnisolatedQa"), "allowUnisolatedQa"),
            local_synth=_flag(node.try_get_context(LOCAL_SYNTH_MARKER)),
            anthropic_base_url=str(ctx("anthropicBaseUrl")),
            sample_workload=_strict_flag(ctx("sampleWorkload"), "sampleWorkload"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:  # noqa: C901 - a flat list of independent checks, one branch each
        problems = []
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,15}", self.env_name):
            problems.append(f"environment {self.env_name!r}: lowercase letters, digits and '-', at most 16")
        if self.alert_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alert_email):
            problems.append(f"alertEmail {self.alert_email!r} is not an email address")
        if self.automation_level not in AUTOMATION_LEVELS:
            problems.append(f"automationLevel must be one of {AUTOMATION_LEVELS}")
        if self.engineer_provider not in PROVIDERS:
            problems.append(f"engineerProvider must be one of {PROVIDERS}")
        elif self.engineer_provider == "bedrock":
            try:
                bedrock_model_id(self.engineer_model)
            except ConfigError as exc:
                problems.append(f"engineerModel: {exc}")
        # math.isfinite: NaN compares false to everything and inf passes "> 0"; either would make an
        # alarm that never fires.
        if not (math.isfinite(self.cost_alert_threshold) and self.cost_alert_threshold > 0):
            problems.append(f"costAlertThreshold must be a finite number > 0, not {self.cost_alert_threshold!r}")
        # Written as a range so NaN fails too; "inf" would reach SSM and be refused at every read.
        if not 0 <= self.daily_llm_budget_usd <= MAX_DAILY_LLM_BUDGET_USD:
            problems.append(
                f"dailyLlmBudgetUsd must be between 0 and {MAX_DAILY_LLM_BUDGET_USD:g}, not {self.daily_llm_budget_usd!r}"
            )
        if self.anthropic_base_url and not re.fullmatch(r"https?://\S+", self.anthropic_base_url):
            problems.append(f"anthropicBaseUrl {self.anthropic_base_url!r} must be an http(s) URL")
        if not 1 <= self.max_fix_attempts <= 10:
            problems.append("maxFixAttempts must be between 1 and 10")
        if not 30 <= self.verify_window_seconds <= 86_400:
            problems.append("verifyWindowSeconds must be between 30 and 86400")
        if not 1 <= self.archive_retention_days <= 3650:
            problems.append("archiveRetentionDays must be between 1 and 3650")
        if self.allow_unisolated_qa and not self.local_synth:
            problems.append(
                "allowUnisolatedQa runs fix code without isolation and is only for the local runtime, "
                "never for a deployment"
            )
        if bool(self.qa_runner_vpc_id) != bool(self.qa_runner_subnet_ids):
            problems.append("qaRunnerVpcId and qaRunnerSubnetIds (comma-separated) are given together or not at all")
        if self.qa_runner_vpc_id and not re.fullmatch(r"vpc-[0-9a-f]{8,17}", self.qa_runner_vpc_id):
            problems.append(f"qaRunnerVpcId {self.qa_runner_vpc_id!r} is not a VPC id")
        if any(not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s) for s in self.qa_runner_subnet_ids):
            problems.append("qaRunnerSubnetIds must be subnet ids")
        if problems:
            raise ValueError("invalid CDK context: " + "; ".join(problems))
