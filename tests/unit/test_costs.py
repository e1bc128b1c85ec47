"""The cost model: prices as data, cache tokens at their own rates, unknown models flagged."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from agentops_monitoring.costs import OVERRIDE_ENV, PRICES_FILE, PriceTable, _build, load_price_table
from selfheal_core.config import ConfigError


@pytest.fixture
def table() -> PriceTable:
    return PriceTable(json.loads(PRICES_FILE.read_text()))


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    _build.cache_clear()
    yield
    _build.cache_clear()


def test_the_shipped_table_covers_the_required_models_with_every_rate_and_a_date(table):
    for model in ("claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-3-5-haiku"):
        price = table.price_of(model)
        assert price.effective_date <= date.today()
        assert 0 < price.cache_read < price.input < price.cache_write_5m < price.cache_write_1h
        assert price.output > price.input
    assert table.aws.lambda_gb_second["arm64"] < table.aws.lambda_gb_second["x86_64"]
    assert table.aws.eventbridge_event > 0 and table.aws.dynamodb_write_request > 0 and table.aws.sns_publish > 0


def test_each_token_kind_is_priced_at_its_own_rate(table):
    # Given one million tokens of each kind on Sonnet 4.5 ($3 in, $15 out, $3.75 / $6 writes, $0.30 reads)
    cost = table.llm_cost(
        "claude-sonnet-4-5-20250929",
        1_000_000,
        1_000_000,
        cache_creation_input_tokens=2_000_000,
        cache_read_input_tokens=1_000_000,
        cache_write_1h_input_tokens=1_000_000,
    )
    # Then the 5-minute and 1-hour writes and the reads each use their own price
    assert cost.breakdown == pytest.approx(
        {"input": 3.0, "output": 15.0, "cache_write_5m": 3.75, "cache_write_1h": 6.0, "cache_read": 0.30}
    )
    assert cost.cost_usd == pytest.approx(28.05)
    assert not cost.unknown_model and cost.priced_as == "claude-sonnet-4-5"


def test_cache_reads_are_much_cheaper_than_the_same_tokens_as_input(table):
    cached = table.llm_cost("claude-haiku-4-5", 0, 0, cache_read_input_tokens=100_000).cost_usd
    uncached = table.llm_cost("claude-haiku-4-5", 100_000, 0).cost_usd
    assert cached == pytest.approx(uncached / 10)


@pytest.mark.parametrize(
    "model_id, entry",
    [
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
    ],
)
def test_api_bedrock_and_vertex_ids_resolve_to_their_entry(table, model_id, entry):
    assert table.resolve(model_id) == entry


def test_an_unknown_model_is_flagged_and_priced_as_the_most_expensive_tier_never_zero(table):
    cost = table.llm_cost("claude-opus-9-1", 1_000_000, 0)
    assert cost.unknown_model is True
    assert cost.priced_as in ("claude-opus-4-1", "claude-opus-4", "claude-3-opus")  # $15 / $75, the top tier
    assert cost.cost_usd == pytest.approx(15.0)
    assert cost.pricing()["source"] == "fallback"


def test_a_newer_model_of_a_known_family_is_not_silently_priced_as_its_elder(table):
    assert table.resolve("claude-opus-4-9") is None
    assert table.resolve("claude-sonnet-5-6") is None


def test_the_fallback_rule_is_configurable():
    data = json.loads(PRICES_FILE.read_text())
    data["unknown_model"] = {"rule": "as_model", "model": "claude-sonnet-4-5"}
    assert PriceTable(data).llm_cost("mystery-model", 1_000_000, 0).priced_as == "claude-sonnet-4-5"


def test_prices_follow_their_effective_dates():
    data = json.loads(PRICES_FILE.read_text())
    data["llm"]["claude-haiku-4-5"].append(
        {
            "effective_date": "2099-01-01",
            "input": 0.5,
            "output": 2.5,
            "cache_write_5m": 0.625,
            "cache_write_1h": 1.0,
            "cache_read": 0.05,
        }
    )
    table = PriceTable(data)
    assert table.price_of("claude-haiku-4-5", date(2026, 1, 1)).input == 1.0
    assert table.price_of("claude-haiku-4-5", date(2099, 6, 1)).input == 0.5


def test_lambda_cost_is_billed_duration_times_memory_plus_the_request(table):
    # 1.5 s at 1024 MB on x86_64 = 1.5 GB-s
    assert table.lambda_cost(1.5, 1024, "x86_64") == pytest.approx(1.5 * 0.0000166667 + 0.0000002)
    assert table.lambda_cost(1.5, 1024, "arm64") == pytest.approx(1.5 * 0.0000133334 + 0.0000002)
    assert table.lambda_cost(0.0001, 128) > 0.0000002  # rounded up to 1 ms, never free


def test_request_prices_cover_eventbridge_dynamodb_and_sns(table):
    cost = table.request_cost(
        eventbridge_events=1_000_000, dynamodb_writes=1_000_000, dynamodb_reads=1_000_000, sns_publishes=1_000_000
    )
    assert cost == pytest.approx(1.0 + 0.625 + 0.125 + 0.5)


def test_the_env_override_changes_and_adds_models_without_code(monkeypatch):
    override = {
        "version": "ops-2026-01",
        "llm": {
            "claude-sonnet-4-5": [
                {
                    "effective_date": "2025-01-01",
                    "input": 2.0,
                    "output": 10.0,
                    "cache_write_5m": 2.5,
                    "cache_write_1h": 4.0,
                    "cache_read": 0.2,
                }
            ],
            "claude-next": [
                {
                    "effective_date": "2025-01-01",
                    "input": 1.0,
                    "output": 1.0,
                    "cache_write_5m": 1.0,
                    "cache_write_1h": 1.0,
                    "cache_read": 1.0,
                }
            ],
        },
    }
    monkeypatch.setenv(OVERRIDE_ENV, json.dumps(override))
    table = load_price_table()
    assert table.version == "ops-2026-01"
    assert table.price_of("claude-sonnet-4-5").input == 2.0
    assert not table.llm_cost("claude-next", 10, 10).unknown_model
    assert table.price_of("claude-haiku-4-5").input == 1.0  # untouched entries keep the file's prices


@pytest.mark.parametrize("bad", ["not json", "[1]", json.dumps({"llm": {"claude-x": [{"input": -1}]}})])
def test_a_bad_override_fails_loudly(monkeypatch, bad):
    monkeypatch.setenv(OVERRIDE_ENV, bad)
    with pytest.raises(ConfigError):
        load_price_table()


def test_negative_token_counts_are_refused(table):
    with pytest.raises(ValueError):
        table.llm_cost("claude-haiku-4-5", -1, 0)


# ------------------------------------------------------------------ the 2026 table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_shipped_entry_has_a_source_url_an_effective_date_and_all_five_rates(table):
    data = json.loads(PRICES_FILE.read_text())
    for model, history in data["llm"].items():
        for entry in history:
            assert entry["source"].startswith("https://"), model
            assert date.fromisoformat(entry["effective_date"]) <= date(2026, 11, 27), model
            for rate in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read"):
                assert entry[rate] > 0, (model, rate)
            # The cache multipliers Anthropic applies (the page rounds Haiku 3 to the cent): 1.25x and 2x input.
            assert entry["cache_write_5m"] == pytest.approx(entry["input"] * 1.25, rel=0.05), model
            assert entry["cache_write_1h"] == pytest.approx(entry["input"] * 2, rel=0.05), model
            assert entry["cache_read"] < entry["input"], model
    assert data["aws"]["source"].startswith("https://")


@pytest.mark.parametrize(
    "model, price_in, price_out",
    [
        ("claude-sonnet-4-6", 3.0, 15.0),
        ("claude-opus-4-6", 5.0, 25.0),
        ("claude-opus-4-7", 5.0, 25.0),
        ("claude-opus-4-8", 5.0, 25.0),
        ("claude-opus-5", 5.0, 25.0),
        ("claude-opus-5-5", 4.0, 20.0),
        ("claude-sonnet-5", 2.0, 10.0),
        ("claude-sonnet-5-5", 2.0, 10.0),
        ("claude-haiku-5-5", 0.1, 0.5),
        ("claude-fable-5", 10.0, 50.0),
        ("claude-fable-5-1", 10.0, 50.0),
        ("claude-fable-5-2", 8.0, 40.0),
    ],
)
def test_the_2026_models_are_priced_from_the_table_not_the_fallback(table, model, price_in, price_out):
    # Given 50k input tokens (a short prompt) and one million output tokens
    cost = table.llm_cost(model, 50_000, 1_000_000)
    # Then the model's own list price applies, never the $15 / $75 fallback
    assert not cost.unknown_model and cost.priced_as == model
    assert cost.cost_usd == pytest.approx(price_in * 0.05 + price_out)


def test_every_model_the_readme_names_resolves_without_the_fallback(table):
    named = set(re.findall(r"\bclaude-[a-z0-9][a-z0-9.-]*[a-z0-9]", README.read_text()))
    named = {n for n in named if re.search(r"-\d", n)}  # model ids, not words like claude-code
    assert named, "the README names no model"
    assert [n for n in sorted(named) if table.resolve(n) is None] == []


def test_the_configured_default_models_are_in_the_table(table):
    from selfheal_core.config import DEFAULT_ENGINEER_MODEL, DEFAULT_MANAGER_MODEL, RuntimeParameters

    defaults = {
        DEFAULT_ENGINEER_MODEL,
        DEFAULT_MANAGER_MODEL,
        RuntimeParameters().engineer_model,
        RuntimeParameters().manager_model,
    }
    assert [m for m in sorted(defaults) if table.resolve(m) is None] == []


def test_a_default_missing_from_the_table_is_caught():
    # Given a table without the default engineer model (a release dropped it)
    from selfheal_core.config import DEFAULT_ENGINEER_MODEL

    data = json.loads(PRICES_FILE.read_text())
    del data["llm"][DEFAULT_ENGINEER_MODEL]
    table = PriceTable(data)
    # Then it no longer resolves, and pricing it is flagged and never zero
    assert table.resolve(DEFAULT_ENGINEER_MODEL) is None
    cost = table.llm_cost(DEFAULT_ENGINEER_MODEL, 1_000, 1_000)
    assert cost.unknown_model and cost.cost_usd > 0


@pytest.mark.parametrize(
    "model_id, entry",
    [
        # Bedrock foundation models, with and without the version suffix
        ("anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("anthropic.claude-sonnet-5-5", "claude-sonnet-5-5"),
        # regional and global cross-region inference profiles
        ("us.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("eu.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        ("apac.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("jp.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
        ("global.anthropic.claude-sonnet-5", "claude-sonnet-5"),
        # ARNs of an inference profile and of a foundation model
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6",
            "claude-sonnet-4-6",
        ),
        ("arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        # Vertex ids
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("claude-opus-4-6", "claude-opus-4-6"),
        # API aliases
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ],
)
def test_bedrock_vertex_and_inference_profile_ids_resolve_to_the_same_entry(table, model_id, entry):
    assert table.resolve(model_id) == entry
    assert table.llm_cost(model_id, 1_000, 1_000).cost_usd == pytest.approx(
        table.llm_cost(entry, 1_000, 1_000).cost_usd
    )


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "anthropic.",
        "global.",
        "arn:aws:bedrock:::",
        "claude",
        "../claude-opus-4-6",
        "claude-opus-4-6\nclaude-3-haiku",
        "x" * 10_000,
    ],
)
def test_malformed_model_ids_never_resolve_to_a_cheap_entry(table, hostile):
    cost = table.llm_cost(hostile, 1_000_000, 0)
    assert cost.unknown_model or cost.priced_as == "claude-opus-4-6"
    assert cost.cost_usd > 0


def test_a_price_change_applies_from_its_effective_date(table):
    # Sonnet 5.5 cache reads went from $0.20 to $0.10 on 2026-10-07
    assert table.price_of("claude-sonnet-5-5", date(2026, 10, 6)).cache_read == pytest.approx(0.2)
    assert table.price_of("claude-sonnet-5-5", date(2026, 10, 7)).cache_read == pytest.approx(0.1)


def test_a_long_prompt_on_haiku_5_5_is_priced_at_the_long_prompt_rates_on_every_token(table):
    # Given a prompt of exactly 100k tokens (input + cache) and one above it
    short = table.llm_cost("claude-haiku-5-5", 60_000, 1_000_000, cache_read_input_tokens=40_000)
    long = table.llm_cost("claude-haiku-5-5", 60_001, 1_000_000, cache_read_input_tokens=40_000)
    # Then only the longer one pays the higher rates, output included
    assert short.breakdown["output"] == pytest.approx(0.5)
    assert long.breakdown["output"] == pytest.approx(2.5)
    assert long.breakdown["input"] == pytest.approx(60_001 * 0.5 / 1_000_000)


def test_billed_lambda_cost_is_billed_ms_times_memory_plus_the_request(table):
    # REPORT ... Billed Duration: 1150 ms  Memory Size: 256 MB
    assert table.billed_lambda_cost(1150, 256) == pytest.approx(1.150 * 0.25 * 0.0000166667 + 0.0000002)
