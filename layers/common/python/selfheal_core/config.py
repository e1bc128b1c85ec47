"""Configuration as validated models.

`Settings` comes from the function's environment at cold start and fails fast naming the
missing variable. `RuntimeParameters` are the hot-reloadable thresholds kept in SSM under
`PARAMETER_PREFIX`, cached by Powertools Parameters for `PARAMETERS_MAX_AGE` seconds.
"""

# No `from __future__ import annotations`: see selfheal_core/events.py (model classes, cold start).

import os
import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import catalog
from .catalog import DEFAULT_ENGINEER_MODEL, DEFAULT_MANAGER_MODEL, AutomationLevel, Provider

# With engineerProvider=bedrock an Anthropic model id is called through the global cross-Region
# inference profile; a Bedrock id (anthropic.…, us./eu./apac./jp./au./global.anthropic.…) is used as is.
BEDROCK_DEFAULT_PROFILE = "global"
_BEDROCK_ID = re.compile(r"^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?anthropic\.claude-[a-z0-9.-]+(?::\d+)?$")


def bedrock_model_id(model: str) -> str:
    """The Bedrock model or inference-profile id for a configured model id."""
    model = model.strip()
    if _BEDROCK_ID.fullmatch(model):
        return model
    if re.fullmatch(r"claude-[a-z0-9-]+", model):
        return f"{BEDROCK_DEFAULT_PROFILE}.anthropic.{model}"
    raise ConfigError(f"{model!r} is neither an Anthropic nor a Bedrock Claude model id")


class ConfigError(RuntimeError):
    pass


class Settings(BaseModel):
    environment: str = Field(min_length=1)
    event_bus_name: str = Field(min_length=1)
    decisions_table_name: str = Field(min_length=1)
    monitoring_table_name: str = Field(min_length=1)
    idempotency_table_name: str = Field(min_length=1)
    validations_table_name: str = ""  # QA's verdicts: set for QA (writes) and the Manager (reads) only
    artifacts_bucket: str = Field(min_length=1)
    alerts_topic_arn: str = Field(min_length=1)
    secret_name: str = ""  # the AgentOps key (not set for QA, which reads no secret: no AgentOps traces)
    anthropic_secret_name: str = ""  # the Anthropic key: set for the Engineer only
    parameter_prefix: str = Field(min_length=1)
    parameters_max_age: int = 60
    # Manager only: one-time schedules (ApplyDue / VerifyDue) put events on the bus with this role.
    event_bus_arn: str = ""
    scheduler_role_arn: str = ""


_ENV_KEYS = {
    "environment": "ENVIRONMENT",
    "event_bus_name": "EVENT_BUS_NAME",
    "decisions_table_name": "DECISIONS_TABLE_NAME",
    "monitoring_table_name": "MONITORING_TABLE_NAME",
    "idempotency_table_name": "IDEMPOTENCY_TABLE_NAME",
    "validations_table_name": "VALIDATIONS_TABLE_NAME",
    "artifacts_bucket": "ARTIFACTS_BUCKET",
    "alerts_topic_arn": "ALERTS_TOPIC_ARN",
    "secret_name": "SECRET_NAME",
    "anthropic_secret_name": "ANTHROPIC_SECRET_NAME",
    "parameter_prefix": "PARAMETER_PREFIX",
    "parameters_max_age": "PARAMETERS_MAX_AGE",
    "event_bus_arn": "EVENT_BUS_ARN",
    "scheduler_role_arn": "SCHEDULER_ROLE_ARN",
}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    raw = {field: os.environ[var] for field, var in _ENV_KEYS.items() if var in os.environ}
    missing = [
        var for field, var in _ENV_KEYS.items() if var not in os.environ and Settings.model_fields[field].is_required()
    ]
    if missing:
        raise ConfigError(f"missing environment variables: {', '.join(missing)}")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc


class ScanThresholds(BaseModel):
    """Thresholds for the scheduled metric scan (docs/architecture.md, "The flow")."""

    model_config = ConfigDict(defer_build=True)

    error_rate_pct: float = Field(default=catalog.DEFAULT_SCAN_THRESHOLDS["error_rate_pct"], gt=0)
    latency_p95_ms: float = Field(default=catalog.DEFAULT_SCAN_THRESHOLDS["latency_p95_ms"], gt=0)
    throttles: float = Field(default=catalog.DEFAULT_SCAN_THRESHOLDS["throttles"], ge=0)


class RuntimeParameters(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on the first invocation, not at import

    automation_level: AutomationLevel = catalog.DEFAULT_AUTOMATION_LEVEL
    max_fix_attempts: int = Field(default=catalog.DEFAULT_MAX_FIX_ATTEMPTS, ge=1, le=10)
    # Finite and capped: "inf"/"nan"/"1e400" would pass `ge=0` and then break every reservation.
    daily_llm_budget_usd: float = Field(
        default=catalog.DEFAULT_DAILY_LLM_BUDGET_USD, ge=0, le=catalog.MAX_DAILY_LLM_BUDGET_USD, allow_inf_nan=False
    )
    engineer_provider: Provider = catalog.DEFAULT_PROVIDER
    engineer_model: str = DEFAULT_ENGINEER_MODEL
    manager_model: str = DEFAULT_MANAGER_MODEL
    scan_thresholds: ScanThresholds = Field(default_factory=ScanThresholds)
    # A gateway in front of the Anthropic API (or a Bedrock-compatible endpoint); "" = the SDK default.
    anthropic_base_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    # service -> "any" or ["HH:MM-HH:MM", ...] in UTC; "*" is every other service; absent = "any".
    apply_windows: dict[str, str | list[str]] = Field(default_factory=lambda: dict(catalog.DEFAULT_APPLY_WINDOWS))
    verify_window_seconds: int = Field(default=catalog.DEFAULT_VERIFY_WINDOW_SECONDS, ge=30, le=86_400)

    @field_validator("apply_windows")
    @classmethod
    def _windows_read(cls, windows: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for service, spec in windows.items():
            for window in [spec] if isinstance(spec, str) else spec:
                if window != "any" and not APPLY_WINDOW.fullmatch(window.replace(" ", "")):
                    raise ValueError(f"{service}: {window!r} is not 'any' or a window 'HH:MM-HH:MM' (UTC, 00:00-24:00)")
        return windows


# "22:00-06:00": from 22:00 to 06:00 the next day (UTC); 24:00 ends a window at midnight.
APPLY_WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)")


# SSM parameter name (below the prefix) -> RuntimeParameters field
PARAMETER_NAMES = {
    "automation-level": "automation_level",
    "max-fix-attempts": "max_fix_attempts",
    "daily-llm-budget-usd": "daily_llm_budget_usd",
    "engineer-provider": "engineer_provider",
    "engineer-model": "engineer_model",
    "manager-model": "manager_model",
    "scan-thresholds": "scan_thresholds",
    "anthropic-base-url": "anthropic_base_url",
    "apply-windows": "apply_windows",
    "verify-window-seconds": "verify_window_seconds",
}
JSON_PARAMETERS = frozenset({"scan_thresholds", "apply_windows"})


def parse_parameters(values: dict[str, str]) -> RuntimeParameters:
    """Map SSM values (by short name) onto the validated model; bad values fail loudly."""
    import json

    raw: dict[str, Any] = {}
    named: dict[str, str] = {}  # field -> the parameter it came from, for the error message
    for name, value in values.items():
        field = PARAMETER_NAMES.get(name.rsplit("/", 1)[-1])
        if field is None:
            continue
        named[field] = name
        if field in JSON_PARAMETERS:
            try:
                raw[field] = json.loads(value)
            except ValueError as exc:  # a JSONDecodeError alone would not say which parameter
                raise ConfigError(f"SSM parameter {name} is not JSON: {exc}") from exc
        else:
            raw[field] = value
    try:
        return RuntimeParameters.model_validate(raw)
    except ValidationError as exc:
        culprits = sorted({named.get(str(e["loc"][0]), str(e["loc"][0])) for e in exc.errors() if e["loc"]})
        raise ConfigError(f"invalid SSM parameter {', '.join(culprits)}: {exc}") from exc


def get_runtime_parameters(settings: Settings | None = None) -> RuntimeParameters:
    """Fetch every parameter under the prefix in one call (cached, hot-reloadable)."""
    from aws_lambda_powertools.utilities import parameters

    settings = settings or get_settings()
    values = parameters.get_parameters(settings.parameter_prefix, max_age=settings.parameters_max_age, recursive=True)
    usable, refused = usable_parameters(values)
    for name, reason in refused.items():
        _report_refused(settings, name, values[name], reason)
    return usable


def usable_parameters(values: dict[str, str]) -> tuple[RuntimeParameters, dict[str, str]]:
    """The parameters with each value that does not validate left at its default, and why each was
    refused: one operator's typo (a verify window of 5 s) must not stop every agent."""
    try:
        return parse_parameters(values), {}
    except ConfigError:
        pass
    kept: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, value in values.items():
        try:
            parse_parameters({name: value})
        except ConfigError as exc:
            refused[name] = str(exc)
        else:
            kept[name] = value
    return parse_parameters(kept), refused


_REPORTED: set[tuple[str, str]] = set()  # per execution environment: listed once, not on every reload


def _report_refused(settings: Settings, name: str, value: str, reason: str) -> None:
    """Log the refusal and list it with the refused events (`selfheal rejected`), once per value
    and execution environment."""
    from .observability import logger
    from .rejections import RejectionLog

    if (name, value) in _REPORTED:
        return  # every read of the parameters (each invocation) would say it again
    _REPORTED.add((name, value))
    logger.error("SSM parameter refused; its default is used", extra={"parameter": name, "reason": reason[:1000]})
    RejectionLog(settings.monitoring_table_name).record(
        reason=f"SSM parameter refused, its default is used until it is corrected: {reason}",
        event={"source": "aws.ssm", "detail-type": "Parameter", "parameter": name, "value": value[:2000]},
        agent=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "config"),
    )
