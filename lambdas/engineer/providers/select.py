"""Which provider writes this fix: Claude when configured and a key exists, else the runbook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selfheal_core.config import RuntimeParameters
from selfheal_core.events import IssueReportedV1

from .base import FixProvider
from .runbook import RunbookProvider


def api_keys(secret_name: str) -> dict[str, str]:
    """Keys live in Secrets Manager as JSON; cached by Powertools Parameters."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(secret_name, transform="json", max_age=300)
    except parameters.exceptions.GetParameterError:
        return {}
    return value if isinstance(value, dict) else {}


def choose_provider(
    issue: IssueReportedV1,
    params: RuntimeParameters,
    *,
    keys: Callable[[], dict[str, str]],
    monitor: Any,
    remaining_time_s: Callable[[], float],
) -> tuple[FixProvider, str]:
    runbook = RunbookProvider()
    if params.engineer_provider != "anthropic":
        return runbook, "engineer_provider is 'runbook' (offline mode)"
    api_key = keys().get("anthropic_api_key", "")
    if not api_key:
        return runbook, "no anthropic_api_key in Secrets Manager; runbook used (offline mode)"
    from .claude import ClaudeProvider  # the anthropic SDK is imported only on this path

    provider = ClaudeProvider(
        params.engineer_model,
        api_key,
        budget_guard=monitor.budget_guard(),
        price_call=monitor.price_call,
        remaining_time_s=remaining_time_s,
        secrets_to_scrub=(api_key,),
    )
    return provider, f"anthropic provider, model {params.engineer_model}"
