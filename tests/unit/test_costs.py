"""The cost model: prices as data, cache tokens at their own rates, unknown models flagged."""

from __future__ import annotations

import json
from datetime import date

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
    cost = table.llm_cost("claude-sonnet-4-5-20250929", 1_000_000, 1_000_000,
                          cache_creation_input_tokens=2_000_000, cache_read_input_tokens=1_000_000,
                          cache_write_1h_input_tokens=1_000_000)
    # Then the 5-minute and 1-hour writes and the reads each use their own price
    assert cost.breakdown == pytest.approx({"input": 3.0, "output": 15.0, "cache_write_5m": 3.75,
                                            "cache_write_1h": 6.0, "cache_read": 0.30})
    assert cost.cost_usd == pytest.approx(28.05)
    assert not cost.unknown_model and cost.priced_as == "claude-sonnet-4-5"


def test_cache_reads_are_much_cheaper_than_the_same_tokens_as_input(table):
    cached = table.llm_cost("claude-haiku-4-5", 0, 0, cache_read_input_tokens=100_000).cost_usd
    uncached = table.llm_cost("claude-haiku-4-5", 100_000, 0).cost_usd
    assert cached == pytest.approx(uncached / 10)


@pytest.mark.parametrize("model_id, entry", [
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
])
def test_api_bedrock_and_vertex_ids_resolve_to_their_entry(table, model_id, entry):
    assert table.resolve(model_id) == entry


def test_an_unknown_model_is_flagged_and_priced_as_the_most_expensive_tier_never_zero(table):
    cost = table.llm_cost("claude-opus-9-1", 1_000_000, 0)
    assert cost.unknown_model is True
    assert cost.priced_as in ("claude-opus-4-1", "claude-opus-4")  # $15 / $75, the top tier
    assert cost.cost_usd == pytest.approx(15.0)
    assert cost.pricing()["source"] == "fallback"


def test_a_newer_model_of_a_known_family_is_not_silently_priced_as_its_elder(table):
    assert table.resolve("claude-opus-4-6") is None


def test_the_fallback_rule_is_configurable():
    data = json.loads(PRICES_FILE.read_text())
    data["unknown_model"] = {"rule": "as_model", "model": "claude-sonnet-4-5"}
    assert PriceTable(data).llm_cost("mystery-model", 1_000_000, 0).priced_as == "claude-sonnet-4-5"


def test_prices_follow_their_effective_dates():
    data = json.loads(PRICES_FILE.read_text())
    data["llm"]["claude-haiku-4-5"].append(
        {"effective_date": "2099-01-01", "input": 0.5, "output": 2.5, "cache_write_5m": 0.625, "cache_write_1h": 1.0,
         "cache_read": 0.05})
    table = PriceTable(data)
    assert table.price_of("claude-haiku-4-5", date(2026, 1, 1)).input == 1.0
    assert table.price_of("claude-haiku-4-5", date(2099, 6, 1)).input == 0.5


def test_lambda_cost_is_billed_duration_times_memory_plus_the_request(table):
    # 1.5 s at 1024 MB on x86_64 = 1.5 GB-s
    assert table.lambda_cost(1.5, 1024, "x86_64") == pytest.approx(1.5 * 0.0000166667 + 0.0000002)
    assert table.lambda_cost(1.5, 1024, "arm64") == pytest.approx(1.5 * 0.0000133334 + 0.0000002)
    assert table.lambda_cost(0.0001, 128) > 0.0000002  # rounded up to 1 ms, never free


def test_request_prices_cover_eventbridge_dynamodb_and_sns(table):
    cost = table.request_cost(eventbridge_events=1_000_000, dynamodb_writes=1_000_000, dynamodb_reads=1_000_000,
                              sns_publishes=1_000_000)
    assert cost == pytest.approx(1.0 + 0.625 + 0.125 + 0.5)


def test_the_env_override_changes_and_adds_models_without_code(monkeypatch):
    override = {"version": "ops-2026-01", "llm": {
        "claude-sonnet-4-5": [{"effective_date": "2025-01-01", "input": 2.0, "output": 10.0, "cache_write_5m": 2.5,
                               "cache_write_1h": 4.0, "cache_read": 0.2}],
        "claude-next": [{"effective_date": "2025-01-01", "input": 1.0, "output": 1.0, "cache_write_5m": 1.0,
                         "cache_write_1h": 1.0, "cache_read": 1.0}]}}
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
