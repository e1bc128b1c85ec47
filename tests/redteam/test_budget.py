"""Red-team: the LLM budget against hostile or broken model responses."""

from __future__ import annotations

from agentops_monitoring.costs import load_price_table
from lambdas.engineer.providers.base import LlmUsage, ProviderError
from tests.integration.test_claude_provider import GOOD_FIX, FakeBudgetGuard, make_provider, make_request
from tests.support.anthropic_server import AnthropicTestServer, tool_use

PRICES = load_price_table()


def real_price(usage: LlmUsage) -> float:
    """What the Engineer prices a call with (AgentOpsMonitor.price_call)."""
    return PRICES.llm_cost(
        usage.model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    ).cost_usd


def test_a_response_with_negative_usage_still_settles_its_reservation() -> None:
    """Expected: whatever `usage` the model endpoint reports (here input_tokens = -5,000,000, as a
    broken gateway or a hostile ANTHROPIC_BASE_URL could send), the call's reservation is
    reconciled exactly once and the Engineer gets a ProviderError it knows how to handle.

    Why it matters: ClaudeProvider._call prices the reported usage before reconciling, and the
    price table raises ValueError on a negative count. The reservation is never settled (held
    against the daily budget until the UTC day rolls over) and the ValueError is not a
    ProviderError, so it escapes propose(): the Engineer invocation fails and its retries call
    the model again, each leaking another reservation - a few such responses pause every
    incident of the day as BUDGET_PAUSED with no money actually spent."""
    guard = FakeBudgetGuard()
    with AnthropicTestServer([tool_use(GOOD_FIX, usage={"input_tokens": -5_000_000})]) as srv:
        provider = make_provider(srv, guard, price_call=real_price)
        try:
            provider.propose(make_request())
            escaped = None
        except ProviderError:
            escaped = None
        except Exception as exc:  # noqa: BLE001 - the defect: not a ProviderError
            escaped = exc

    [reservation] = guard.reservations
    assert reservation.reconciled, "the reservation was never reconciled: it stays held until the day rolls over"
    assert escaped is None, f"propose() raised {type(escaped).__name__}: {escaped}"


def test_a_budget_the_parameters_accept_can_be_reserved_against(aws) -> None:
    """Expected: every value of `daily-llm-budget-usd` that parse_parameters accepts works as a
    limit (or the value is refused as a ConfigError, as "bad values fail loudly" promises).
    An operator who sets it to "inf" (or "1e400") to lift the cap gets either unlimited calls or
    a clear configuration error.

    Why it matters: RuntimeParameters only says `ge=0`, so pydantic accepts infinity; then
    BudgetGuard.reserve rounds the limit with Decimal.quantize, which raises InvalidOperation
    on Infinity. Every Engineer model call crashes with an exception that is not a
    ProviderError (no BUDGET_PAUSED, no RemediationFailed): incidents stall until the sweeper
    escalates them, and the cause is a decimal error in the logs."""
    import os

    from agentops_monitoring.budget import BudgetGuard
    from selfheal_core.config import ConfigError, parse_parameters
    from tests.support.tables import create_tables

    create_tables(os.environ["DECISIONS_TABLE_NAME"], os.environ["MONITORING_TABLE_NAME"], "idem")
    for value in ("inf", "1e400"):
        try:
            limit = parse_parameters({"daily-llm-budget-usd": value}).daily_llm_budget_usd
        except ConfigError:
            continue  # refused loudly: fine
        guard = BudgetGuard(os.environ["MONITORING_TABLE_NAME"], limit)
        try:
            reservation = guard.reserve(0.05, model="claude-sonnet-4-5")
        except Exception as exc:
            raise AssertionError(f"limit {value!r} accepted by the parameters, then reserve() raised {exc!r}") from exc
        assert reservation is not None


def test_an_absurd_reported_usage_settles_instead_of_crashing_the_reconcile(aws) -> None:
    """Expected: a call whose response claims absurd usage (here 10**25 output tokens, about
    1.5e20 USD at Sonnet prices: a broken gateway or a hostile endpoint) is still reconciled -
    the reservation released and the cost recorded or capped - without an exception.

    Why it matters: agentops_monitoring/budget.py `_usd` quantizes to 1e-9 USD in Decimal's
    default 28-digit context, so any cost above ~1e19 USD raises decimal.InvalidOperation in
    Reservation.reconcile. The reservation stays held until the UTC day rolls over and the
    exception (not a ProviderError) escapes the Engineer, whose retries call the model again."""
    import os

    from agentops_monitoring.budget import BudgetGuard
    from tests.support.tables import create_tables

    create_tables(os.environ["DECISIONS_TABLE_NAME"], os.environ["MONITORING_TABLE_NAME"], "idem")
    guard = BudgetGuard(os.environ["MONITORING_TABLE_NAME"], 5.0)
    reservation = guard.reserve(0.1, model="claude-sonnet-4-5")
    assert reservation is not None
    absurd = real_price(LlmUsage("claude-sonnet-4-5", input_tokens=1_000, output_tokens=10**25))

    try:
        reservation.reconcile(absurd)
    except Exception as exc:
        raise AssertionError(f"reconcile({absurd:.3g}) raised {exc!r}; reserved stays {guard.budget_status()}") from exc
    assert guard.budget_status().reserved_usd == 0
