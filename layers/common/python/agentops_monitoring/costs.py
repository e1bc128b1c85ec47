"""The cost model (docs/architecture.md, "Monitoring and cost"): prices are data (prices.json), merged with optional overrides.

Overrides, later wins, each a JSON object of the same shape as prices.json:
  1. env `AGENTOPS_PRICES_OVERRIDE` (set on the function; no code change)
  2. SSM `<PARAMETER_PREFIX>prices-override` (hot-reloaded like the other runtime parameters)
A model that matches no entry is priced by the table's `unknown_model` rule (default: the
most expensive known model) and flagged; it is never priced at zero.
"""

# No `from __future__ import annotations`: see selfheal_core/events.py (model classes, cold start).

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfheal_core.config import ConfigError
from selfheal_core.observability import logger

PRICES_FILE = Path(__file__).with_name("prices.json")
OVERRIDE_ENV = "AGENTOPS_PRICES_OVERRIDE"
OVERRIDE_PARAMETER = "prices-override"
TOKENS_PER_UNIT = 1_000_000

# Bedrock ("anthropic.<id>-v1:0", inference profiles "us.", "eu.", "apac.", "us-gov.", "global.", and their
# ARNs), Vertex ("<id>@20250929") and dated API ids ("<id>-20250929", "<id>-latest") map to one entry.
_MODEL_ID = re.compile(
    r"^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?(?:anthropic\.)?(?P<base>.+?)(?:[-@](?:\d{8}|latest))?(?:-v\d+(?::\d+)?)?$"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Rates(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_write_1h: float = Field(ge=0)
    cache_read: float = Field(ge=0)


class LongPrompt(_Rates):
    """Rates for every token of a request whose prompt (input + cache writes + cache reads) exceeds the threshold."""

    threshold_tokens: int = Field(gt=0)


class ModelPrice(_Rates):
    effective_date: date
    source: str = ""  # where the price was read; every entry of the shipped file has one
    long_prompt: LongPrompt | None = None

    def rates_for(self, prompt_tokens: int) -> _Rates:
        if self.long_prompt is not None and prompt_tokens > self.long_prompt.threshold_tokens:
            return self.long_prompt
        return self


class FallbackRule(_Strict):
    rule: Literal["most_expensive", "as_model"] = "most_expensive"
    model: str | None = None


class AwsPrices(_Strict):
    effective_date: date
    region: str
    source: str = ""
    lambda_gb_second: dict[Literal["x86_64", "arm64"], float]
    lambda_request: float = Field(ge=0)
    eventbridge_event: float = Field(ge=0)
    dynamodb_write_request: float = Field(ge=0)
    dynamodb_read_request: float = Field(ge=0)
    sns_publish: float = Field(ge=0)


class _TableModel(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    version: str
    currency: Literal["USD"] = "USD"
    unknown_model: FallbackRule = Field(default_factory=FallbackRule)
    llm: dict[str, list[ModelPrice]] = Field(min_length=1)
    aws: AwsPrices


@dataclass(frozen=True)
class LlmCost:
    cost_usd: float
    model: str
    priced_as: str  # the table entry used; differs from `model` when the fallback rule applied
    unknown_model: bool
    effective_date: str
    table_version: str
    breakdown: dict[str, float] = field(default_factory=dict)

    def pricing(self) -> dict[str, Any]:
        return {
            "priced_as": self.priced_as,
            "source": "fallback" if self.unknown_model else "table",
            "effective_date": self.effective_date,
            "table_version": self.table_version,
        }


class PriceTable:
    def __init__(self, data: dict[str, Any]) -> None:
        try:
            self._t = _TableModel.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid price table: {exc}") from exc
        self.version = self._t.version
        self.aws = self._t.aws
        self.models = sorted(self._t.llm)
        self._fallback = self._fallback_model()

    # ------------------------------------------------------------------ LLM
    def resolve(self, model: str) -> str | None:
        """The table entry for an API / Bedrock / Vertex model id, or None when unknown."""
        if model in self._t.llm:
            return model
        text = model.strip().lower().rsplit("/", 1)[-1]  # an inference-profile or foundation-model ARN
        match = _MODEL_ID.match(text)
        base = match.group("base") if match else ""
        if base in self._t.llm:
            return base
        # API aliases of the first 4.x releases: "claude-opus-4-0" is "claude-opus-4".
        if base.endswith("-0") and base[:-2] in self._t.llm:
            return base[:-2]
        return None

    def price_of(self, entry: str, on: date | None = None) -> ModelPrice:
        """The price in force on `on` (the newest entry not after it)."""
        on = on or datetime.now(UTC).date()
        history = sorted(self._t.llm[entry], key=lambda p: p.effective_date)
        current = [p for p in history if p.effective_date <= on]
        return current[-1] if current else history[0]

    def llm_cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        *,
        cache_write_1h_input_tokens: int = 0,
        on: date | None = None,
    ) -> LlmCost:
        """`cache_creation_input_tokens` is the API's total; the 1-hour share is priced at its own rate."""
        counts = [
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
            cache_write_1h_input_tokens,
        ]
        if any(n < 0 for n in counts):
            raise ValueError("token counts must be >= 0")
        entry = self.resolve(model)
        unknown = entry is None
        priced_as = self._fallback if entry is None else entry
        entry_price = self.price_of(priced_as, on)
        price = entry_price.rates_for(input_tokens + cache_creation_input_tokens + cache_read_input_tokens)
        write_1h = min(cache_write_1h_input_tokens, cache_creation_input_tokens)
        breakdown = {
            "input": input_tokens * price.input / TOKENS_PER_UNIT,
            "output": output_tokens * price.output / TOKENS_PER_UNIT,
            "cache_write_5m": (cache_creation_input_tokens - write_1h) * price.cache_write_5m / TOKENS_PER_UNIT,
            "cache_write_1h": write_1h * price.cache_write_1h / TOKENS_PER_UNIT,
            "cache_read": cache_read_input_tokens * price.cache_read / TOKENS_PER_UNIT,
        }
        return LlmCost(
            cost_usd=sum(breakdown.values()),
            model=model,
            priced_as=priced_as,
            unknown_model=unknown,
            effective_date=entry_price.effective_date.isoformat(),
            table_version=self.version,
            breakdown=breakdown,
        )

    def price_usage(self, model: str, usage: Mapping[str, Any], on: date | None = None) -> LlmCost:
        """Price a recorded `usage` map (the shape track_llm_usage stores)."""

        def count(key: str) -> int:
            return int(usage.get(key, 0) or 0)

        return self.llm_cost(
            model,
            count("input_tokens"),
            count("output_tokens"),
            count("cache_creation_input_tokens"),
            count("cache_read_input_tokens"),
            cache_write_1h_input_tokens=count("cache_write_1h_input_tokens"),
            on=on,
        )

    def _fallback_model(self) -> str:
        rule = self._t.unknown_model
        if rule.rule == "as_model":
            if rule.model not in self._t.llm:
                raise ConfigError(f"price table: unknown_model.model {rule.model!r} is not in the table")
            return rule.model
        # Most expensive tier: an unknown model is over-estimated, never under-estimated.
        return max(self.models, key=lambda m: (self.price_of(m).output, self.price_of(m).input))

    # ------------------------------------------------------------------ AWS
    def lambda_cost(self, duration_s: float, memory_mb: int, architecture: str = "x86_64") -> float:
        """Billed duration (rounded up to 1 ms) x memory GB x price per GB-second, plus the request."""
        return self.billed_lambda_cost(max(1, math.ceil(duration_s * 1000)), memory_mb, architecture)

    def billed_lambda_cost(self, billed_ms: int, memory_mb: int, architecture: str = "x86_64") -> float:
        """What AWS bills for one invocation: `Billed Duration` x `Memory Size` x GB-second price + the request."""
        gb_second = self.aws.lambda_gb_second["arm64" if architecture == "arm64" else "x86_64"]
        return billed_ms / 1000 * memory_mb / 1024 * gb_second + self.aws.lambda_request

    def request_cost(
        self, eventbridge_events: int = 0, dynamodb_writes: int = 0, dynamodb_reads: int = 0, sns_publishes: int = 0
    ) -> float:
        a = self.aws
        return (
            eventbridge_events * a.eventbridge_event
            + dynamodb_writes * a.dynamodb_write_request
            + dynamodb_reads * a.dynamodb_read_request
            + sns_publishes * a.sns_publish
        )


# ---------------------------------------------------------------------- loading
def load_price_table(*, parameter_prefix: str | None = None, max_age: int = 60) -> PriceTable:
    """File + env override + SSM override (when a prefix is given); parsed once per distinct input."""
    ssm_override = _ssm_override(parameter_prefix, max_age) if parameter_prefix else None
    return _build(os.environ.get(OVERRIDE_ENV) or None, ssm_override)


@lru_cache(maxsize=8)
def _build(env_override: str | None, ssm_override: str | None) -> PriceTable:
    data = json.loads(PRICES_FILE.read_text())
    for source, text in ((OVERRIDE_ENV, env_override), (OVERRIDE_PARAMETER, ssm_override)):
        if text:
            try:
                override = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{source}: not JSON: {exc}") from exc
            if not isinstance(override, dict):
                raise ConfigError(f"{source}: must be a JSON object")
            data = merge(data, override)
            logger.info("price table override applied", extra={"source": source, "version": data.get("version")})
    return PriceTable(data)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested objects merge; anything else (a model's price list, a number) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _ssm_override(parameter_prefix: str, max_age: int) -> str | None:
    # Same by-path read (and Powertools cache) as get_runtime_parameters, so no extra permission.
    from aws_lambda_powertools.utilities import parameters

    try:
        values = parameters.get_parameters(parameter_prefix, max_age=max_age, recursive=True)
    except Exception as exc:  # noqa: BLE001 - no override is a valid state; the file prices apply
        logger.debug("no SSM price override", extra={"error": str(exc)})
        return None
    return values.get(OVERRIDE_PARAMETER)
