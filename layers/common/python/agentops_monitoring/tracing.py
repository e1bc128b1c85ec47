"""AgentOps SDK traces, only when an AgentOps key is configured (docs/architecture.md, "Monitoring and cost").

The key comes from the Secrets Manager secret named by Settings.secret_name (JSON with
`agentops_api_key`), cached by Powertools Parameters.
Without a key `agentops` is never imported: it costs ~0.7 s and `agentops.init()` starts
threads and calls the network even without one.

API used (agentops 0.4.21, read from its source): `agentops.init(api_key=..., auto_start_session=False,
instrument_llm_calls=False, ...)`, `agentops.start_trace(trace_name, tags)` -> TraceContext,
`agentops.end_trace(ctx, end_state)` which ends the root span and force-flushes the exporter, and
`agentops.sdk.core.tracer.make_span(name, span_kind, attributes=...)` / `finalize_span(span, token)`
for child spans. LLM calls are recorded as our own `llm` spans (auto-instrumentation is off so the
Anthropic SDK is not patched); AgentOps' own cost view does not count Anthropic cache tokens, so
the figures in our tables and dashboards, not AgentOps', drive alarms and the budget.
Tracing never breaks a handler: every SDK call is guarded and logged.
The SDK ships in the Engineer's layers only (stacks/constructs/common_layer.py): where it is not
installed no trace starts and the key is never read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

from selfheal_core.observability import logger

SECRET_MAX_AGE_S = 300
_initialized_with: str | None = None  # one agentops.init per process (and per key)


def api_keys(secret_name: str) -> dict[str, str]:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(secret_name, transform="json", max_age=SECRET_MAX_AGE_S)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable secret means "no AgentOps"
        logger.debug("no API keys secret", extra={"error": str(exc)})
        return {}
    return value if isinstance(value, dict) else {}


def sdk_installed() -> bool:
    return "agentops" in sys.modules or importlib.util.find_spec("agentops") is not None


class AgentOpsTracing:
    def __init__(self, secret_name: str | None, *, agent: str, environment: str) -> None:
        self.secret_name = secret_name
        self.agent = agent
        self.environment = environment
        self._trace: Any = None
        self._tags: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return self._trace is not None

    def start(self, *, incident_id: str | None, correlation_id: str | None) -> None:
        self._trace = None
        if not self.secret_name or not sdk_installed():
            return
        key = api_keys(self.secret_name).get("agentops_api_key", "")
        if not key:
            return
        try:
            agentops = _init(key)
            self._tags = {"agent": self.agent, "environment": self.environment}
            self._trace = agentops.start_trace(trace_name=f"{self.agent}-invocation", tags=self._tag_list())
            self.bind(incident_id=incident_id, correlation_id=correlation_id)
        except Exception:  # noqa: BLE001
            logger.warning("AgentOps trace could not start", exc_info=True)
            self._trace = None

    def bind(self, *, incident_id: str | None = None, correlation_id: str | None = None) -> None:
        if not self.active:
            return
        for name, value in (("incident_id", incident_id), ("correlation_id", correlation_id)):
            if value:
                self._tags[name] = value
        with _guard("bind"):
            span = self._trace.span
            span.set_attribute("agentops.tags", self._tag_list())
            for name, value in self._tags.items():
                span.set_attribute(f"trace.metadata.{name}", value)

    def llm_span(self, model: str, usage: dict[str, int], cost_usd: float) -> None:
        """A completed model call as an `llm` span with its full usage, cache tokens included."""
        if not self.active:
            return
        with _guard("llm span"):
            from agentops.sdk.core import tracer

            attributes = {
                "gen_ai.request.model": model,
                "gen_ai.usage.prompt_tokens": usage.get("input_tokens", 0),
                "gen_ai.usage.completion_tokens": usage.get("output_tokens", 0),
                "gen_ai.usage.cache_creation_input_tokens": usage.get("cache_creation_input_tokens", 0),
                "gen_ai.usage.cache_read_input_tokens": usage.get("cache_read_input_tokens", 0),
                "gen_ai.usage.total_cost": cost_usd,
            }
            span, _, token = tracer.make_span("anthropic.messages", "llm", attributes=attributes)
            tracer.finalize_span(span, token)

    def end(self, *, success: bool) -> None:
        """End the invocation's trace; agentops.end_trace force-flushes before we return."""
        if not self.active:
            return
        trace, self._trace = self._trace, None
        with _guard("end"):
            import agentops

            agentops.end_trace(trace, end_state=agentops.SUCCESS if success else agentops.ERROR)

    def _tag_list(self) -> list[str]:
        return [f"{k}:{v}" for k, v in self._tags.items()]


def _init(key: str) -> Any:
    global _initialized_with
    import agentops  # the only import of the SDK: reached only when a key is configured

    if _initialized_with != key:
        agentops.init(
            api_key=key,
            auto_start_session=False,  # one trace per invocation, started by us
            instrument_llm_calls=False,  # our llm spans carry cache tokens and our cost
            env_data_opt_out=True,
            fail_safe=True,
            log_level="WARNING",
        )
        _initialized_with = key
    return agentops


@contextlib.contextmanager
def _guard(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:  # noqa: BLE001 - observability must never fail the handler
        logger.warning(f"AgentOps {what} failed", exc_info=True)
