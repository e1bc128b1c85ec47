"""Which endpoint the Engineer uses to reach Claude, as `selfheal local status` reports it.

The same precedence the Engineer applies (lambdas/engineer/providers/select.py): the
`anthropic-base-url` SSM parameter, else the variable the runtime passes from the user's
shell to the Engineer's workers, else the SDK's default endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .assembly import REGION

ANTHROPIC_DEFAULT = "https://api.anthropic.com"


def engineer_endpoint(ssm: Any, environ: Mapping[str, str]) -> dict[str, str]:
    values = _parameters(ssm)
    provider = values.get("engineer-provider", "runbook")
    gateway = values.get("anthropic-base-url", "")
    if provider == "runbook":
        return {"provider": "runbook", "endpoint": "none (deterministic runbooks, no model calls)", "source": "-"}
    if provider == "bedrock":
        candidates = [
            ("SSM anthropic-base-url", gateway),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "")),
            ("ANTHROPIC_BEDROCK_BASE_URL", environ.get("ANTHROPIC_BEDROCK_BASE_URL", "")),
        ]
        default = f"https://bedrock-runtime.{REGION}.amazonaws.com"
    else:
        candidates = [
            ("SSM anthropic-base-url", gateway),
            ("ANTHROPIC_BASE_URL", environ.get("ANTHROPIC_BASE_URL", "")),
        ]
        default = ANTHROPIC_DEFAULT
    source, endpoint = next(((s, v) for s, v in candidates if v), ("SDK default", default))
    return {"provider": provider, "endpoint": endpoint, "source": source, "model": values.get("engineer-model", "")}


def _parameters(ssm: Any) -> dict[str, str]:
    """Short name -> value of the Selfheal parameters in the emulator (`/selfheal/<env>/<name>`)."""
    found: dict[str, str] = {}
    for name in list(getattr(ssm, "_parameters", {}).keys()):
        if not str(name).startswith("/selfheal/"):
            continue
        try:
            found[str(name).rsplit("/", 1)[-1]] = ssm.get_parameter(name).value
        except Exception:  # noqa: BLE001, S112 - a parameter deleted meanwhile is simply not shown
            continue
    return found
