"""Claude through Amazon Bedrock (AnthropicBedrock, the role's credentials) and through a gateway
(`anthropicBaseUrl`), against the local test server: same prompt caching, tool use, budget guard,
retry bounds and usage recording as the direct API."""

from __future__ import annotations

from typing import Any

import pytest
from moto import mock_aws

from agentops_monitoring import AgentOpsMonitor
from lambdas.engineer.providers.base import BudgetRefused, ProviderError
from lambdas.engineer.providers.select import BEDROCK_ENDPOINT_ENV, choose_provider
from selfheal_core.config import ConfigError, RuntimeParameters, bedrock_model_id, parse_parameters
from tests.conftest import load_event
from tests.integration.test_claude_chain import GOOD_CART, NEW_TEST
from tests.integration.test_claude_provider import GOOD_FIX, FakeBudgetGuard, make_request
from tests.integration.test_heal import approve
from tests.support.anthropic_server import AnthropicTestServer, overloaded, rate_limited, tool_use
from tests.support.pipeline import Pipeline

PROFILE = "global.anthropic.claude-sonnet-4-6"
GATEWAY_KEY = "sk-ant-" + "api03-" + "g" * 40


class FakeMonitor:
    def __init__(self, guard: FakeBudgetGuard | None = None) -> None:
        self.guard = guard or FakeBudgetGuard()

    def budget_guard(self) -> FakeBudgetGuard:
        return self.guard

    def price_call(self, usage: Any) -> float:
        from agentops_monitoring.costs import load_price_table

        return (
            load_price_table()
            .llm_cost(
                usage.model,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
            )
            .cost_usd
        )


def never_read_keys() -> dict[str, str]:
    raise AssertionError("the Bedrock provider must not read the Anthropic secret")


def bedrock(srv: AnthropicTestServer, monkeypatch, guard: FakeBudgetGuard | None = None, **params: Any):
    monkeypatch.setenv(BEDROCK_ENDPOINT_ENV, srv.base_url)
    provider, why = choose_provider(
        RuntimeParameters(engineer_provider="bedrock", **params),
        keys=never_read_keys,
        monitor=FakeMonitor(guard),
        remaining_time_s=lambda: 300.0,
    )
    return provider, why


# ---------------------------------------------------------------------- Bedrock: the request


def test_the_bedrock_provider_signs_with_the_role_and_calls_invoke_model_on_the_inference_profile(monkeypatch):
    # Given engineerProvider=bedrock with the default model, and no Anthropic key anywhere
    with AnthropicTestServer([tool_use(GOOD_FIX)]) as srv:
        provider, why = bedrock(srv, monkeypatch)
        # When the Engineer asks for a fix
        result = provider.propose(make_request())
    # Then one InvokeModel call went to the global inference profile of the default model, SigV4-signed
    [request] = srv.requests
    assert request.path == f"/model/{PROFILE}/invoke"
    assert "/bedrock/aws4_request" in request.headers["authorization"] and "x-api-key" not in request.headers
    assert request.body["anthropic_version"] and "model" not in request.body
    # And the request is the same as on the direct API: cached prefix, forced tool call
    assert request.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert request.body["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert request.body["tool_choice"] == {"type": "tool", "name": "submit_fix"}
    assert (result.fix.provider, result.fix.model) == ("bedrock", PROFILE)
    assert why.startswith(f"bedrock provider, model {PROFILE}")


def test_bedrock_retries_are_bounded_and_every_reservation_is_reconciled(monkeypatch):
    # Given Bedrock throttles, then is overloaded
    guard = FakeBudgetGuard()
    with AnthropicTestServer([rate_limited(), overloaded(), overloaded()]) as srv:
        provider, _ = bedrock(srv, monkeypatch, guard)
        # When the provider calls it
        with pytest.raises(ProviderError) as raised:
            provider.propose(make_request())
    # Then the SDK tried max_retries + 1 times and stopped; the reservation was released
    assert len(srv.requests) == 3
    assert "Amazon Bedrock error 529" in raised.value.reason
    assert guard.reservations[0].reconciled == [0.0]


def test_bedrock_calls_are_refused_by_the_budget_before_any_request(monkeypatch):
    with AnthropicTestServer([tool_use(GOOD_FIX)]) as srv:
        provider, _ = bedrock(srv, monkeypatch, FakeBudgetGuard(allow=False))
        with pytest.raises(BudgetRefused):
            provider.propose(make_request())
    assert srv.requests == []


def test_the_budget_reservation_prices_the_bedrock_id_from_the_table_not_the_fallback(monkeypatch):
    guard = FakeBudgetGuard()
    with AnthropicTestServer(
        [tool_use(GOOD_FIX, usage={"input_tokens": 1_000, "output_tokens": 100, "cache_creation_input_tokens": 0})]
    ) as srv:
        provider, _ = bedrock(srv, monkeypatch, guard)
        provider.propose(make_request())
    # Sonnet 4.6: $3 in, $15 out (the fallback would be $15 / $75)
    assert guard.reservations[0].reconciled == [pytest.approx((1_000 * 3 + 100 * 15) / 1_000_000)]


def test_a_configured_bedrock_profile_is_used_as_is(monkeypatch):
    with AnthropicTestServer([tool_use(GOOD_FIX)]) as srv:
        provider, _ = bedrock(srv, monkeypatch, engineer_model="eu.anthropic.claude-opus-4-6-v1")
        provider.propose(make_request())
    assert srv.requests[0].path == "/model/eu.anthropic.claude-opus-4-6-v1/invoke"


@pytest.mark.parametrize(
    "model, expected",
    [
        ("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6"),
        ("us.anthropic.claude-sonnet-4-6", "us.anthropic.claude-sonnet-4-6"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
    ],
)
def test_bedrock_model_ids(model, expected):
    assert bedrock_model_id(model) == expected


@pytest.mark.parametrize("hostile", ["gpt-5", "../claude", "claude-sonnet-4-6/../../x", "anthropic.claude x", ""])
def test_a_model_that_is_no_claude_model_is_refused_for_bedrock(hostile):
    with pytest.raises(ConfigError):
        bedrock_model_id(hostile)


# ---------------------------------------------------------------------- gateway


def test_the_gateway_url_from_ssm_reaches_the_client(monkeypatch):
    # Given anthropic-base-url set in SSM and the Anthropic provider
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with AnthropicTestServer([tool_use(GOOD_FIX)]) as srv:
        params = parse_parameters(
            {"/selfheal/test/engineer-provider": "anthropic", "/selfheal/test/anthropic-base-url": srv.base_url}
        )
        provider, why = choose_provider(
            params,
            keys=lambda: {"anthropic_api_key": GATEWAY_KEY},
            monitor=FakeMonitor(),
            remaining_time_s=lambda: 300.0,
        )
        provider.propose(make_request())
    # Then the call went through the gateway, with the key
    assert [r.path for r in srv.requests] == ["/v1/messages"]
    headers = srv.requests[0].headers
    assert GATEWAY_KEY in (headers.get("x-api-key", ""), headers.get("authorization", "").removeprefix("Bearer "))
    assert why.endswith(f"via {srv.base_url}")


def test_the_gateway_url_also_fronts_bedrock_and_wins_over_the_environment(monkeypatch):
    with AnthropicTestServer([tool_use(GOOD_FIX)]) as gateway:
        monkeypatch.setenv(BEDROCK_ENDPOINT_ENV, "http://127.0.0.1:9")  # nothing listens there
        provider, _ = choose_provider(
            RuntimeParameters(engineer_provider="bedrock", anthropic_base_url=gateway.base_url),
            keys=never_read_keys,
            monitor=FakeMonitor(),
            remaining_time_s=lambda: 300.0,
        )
        provider.propose(make_request())
    assert [r.path for r in gateway.requests] == [f"/model/{PROFILE}/invoke"]


@pytest.mark.parametrize("bad", ["ftp://gateway", "javascript:alert(1)", "http://a b", "gateway.example.com"])
def test_a_base_url_that_is_not_http_is_refused(bad):
    with pytest.raises(ConfigError):
        parse_parameters({"anthropic-base-url": bad})


# ---------------------------------------------------------------------- the chain, usage and cost to the cent


@pytest.fixture
def bedrock_server(monkeypatch):
    with AnthropicTestServer() as srv:
        monkeypatch.setenv(BEDROCK_ENDPOINT_ENV, srv.base_url)
        monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
        yield srv


def test_a_code_fix_through_bedrock_is_proven_and_records_usage_and_cost_to_the_cent(bedrock_server):
    # Given the pipeline on Bedrock, with no Anthropic key in Secrets Manager, and a large cached call
    usage = {
        "input_tokens": 120_000,
        "output_tokens": 8_000,
        "cache_creation_input_tokens": 50_000,
        "cache_read_input_tokens": 200_000,
    }
    bedrock_server.script.extend(
        [
            rate_limited(),
            tool_use(
                {
                    "files": {"cart.py": GOOD_CART},
                    "tests": NEW_TEST,
                    "risk_level": "low",
                    "rationale": "average_price divides by len(prices) which is 0 for an empty cart.",
                },
                usage=usage,
            ),
        ]
    )
    with mock_aws():
        pipeline = Pipeline(
            parameters={
                "engineer-provider": "bedrock",
                "automation-level": "semi_auto",
                "max-fix-attempts": "2",
                "daily-llm-budget-usd": "5",
            },
            secret={},
        )
        # When an issue with code comes in
        pipeline.put("IssueReported", load_event("issue_reported")["detail"])
        deliveries = pipeline.run()
        [waiting] = pipeline.incidents()
        approve(pipeline, waiting)  # a code fix is medium risk (QA's assessment): semi_auto asks a person
        [incident] = pipeline.incidents()
        llm = [r for r in AgentOpsMonitor("test").timeline(incident.incident_id) if r.get("cost_kind") == "llm"]
    # Then QA proved the Bedrock fix, and the validated patch waits for a person to merge it
    assert all(d.error is None for d in deliveries), [d.error for d in deliveries]
    assert waiting.status == "AWAITING_APPROVAL" and incident.status == "PATCH_READY"
    assert [r.path for r in bedrock_server.requests] == [f"/model/{PROFILE}/invoke"] * 2  # 429 retried once
    # And the usage Bedrock reported is recorded and priced from the table as Sonnet 4.6, to the cent
    [record] = llm
    assert record["model"] == PROFILE and record["pricing"]["priced_as"] == "claude-sonnet-4-6"
    assert record["pricing"]["source"] == "table"
    assert {k: int(v) for k, v in record["usage"].items() if k in usage} == usage
    expected = (120_000 * 3 + 8_000 * 15 + 50_000 * 3.75 + 200_000 * 0.30) / 1_000_000  # $0.7275
    assert round(float(record["cost_usd"]), 2) == round(expected, 2) == 0.73
    assert float(record["cost_usd"]) == pytest.approx(expected, abs=1e-9)
