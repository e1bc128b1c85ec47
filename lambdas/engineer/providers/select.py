"""Which provider writes this fix: Claude (Anthropic API, a gateway, or Amazon Bedrock) when
configured and usable, else the runbook."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from selfheal_core.config import RuntimeParameters, bedrock_model_id

from .base import FixProvider, ProviderMonitor
from .runbook import RunbookProvider

# The AWS SDKs' service-specific endpoint variable; the local runtime and tests point it at a fake.
BEDROCK_ENDPOINT_ENV = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"


def api_keys(secret_name: str) -> dict[str, str]:
    """Keys live in Secrets Manager as JSON; cached by Powertools Parameters."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(secret_name, transform="json", max_age=300)
    except parameters.exceptions.GetParameterError:
        return {}
    return value if isinstance(value, dict) else {}


def choose_provider(
    params: RuntimeParameters,
    *,
    keys: Callable[[], dict[str, str]],
    monitor: ProviderMonitor,
    remaining_time_s: Callable[[], float],
) -> tuple[FixProvider, str]:
    runbook = RunbookProvider()
    if params.engineer_provider == "runbook":
        return runbook, "engineer_provider is 'runbook' (offline mode)"
    from .claude import ClaudeProvider  # the anthropic SDK is imported only on these paths

    common: dict[str, Any] = {
        "budget_guard": monitor.budget_guard(),
        "price_call": monitor.price_call,
        "remaining_time_s": remaining_time_s,
    }
    if params.engineer_provider == "bedrock":
        # The function's IAM role signs the requests: no key, and the secret is never read.
        model = bedrock_model_id(params.engineer_model)
        base_url = params.anthropic_base_url or os.environ.get(BEDROCK_ENDPOINT_ENV) or None
        provider = ClaudeProvider(model, platform="bedrock", base_url=base_url, **common)
        return provider, f"bedrock provider, model {model}" + (f" via {base_url}" if base_url else "")
    api_key = keys().get("anthropic_api_key", "")
    if not api_key:
        return runbook, "no anthropic_api_key in Secrets Manager; runbook used (offline mode)"
    base_url = params.anthropic_base_url or None
    provider = ClaudeProvider(params.engineer_model, api_key, base_url=base_url, secrets_to_scrub=(api_key,), **common)
    return provider, f"anthropic provider, model {params.engineer_model}" + (f" via {base_url}" if base_url else "")
