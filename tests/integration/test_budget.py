"""The LLM budget as a hard stop: concurrent reservations never overspend; refusals pause and alert."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from agentops_monitoring import AgentOpsMonitor, BudgetGuard, notify_budget_paused
from agentops_monitoring.budget import MAX_USD
from agentops_monitoring.costs import load_price_table
from selfheal_core import aws
from selfheal_core.catalog import MAX_DAILY_LLM_BUDGET_USD
from selfheal_core.config import ConfigError, get_runtime_parameters, get_settings, parse_parameters
from selfheal_core.incidents import IncidentStore, Status
from tests.support.tables import create_tables

CALLS = 50
COST_PER_CALL = 0.10
BUDGET_FOR_FIVE = "0.5"


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def env(settings, monkeypatch):
    # DynamoDB serializes writes to one item; moto's in-process backend does not, so give it
    # the same per-request atomicity. What is tested is our condition, not moto's locking.
    lock = threading.RLock()  # transact_write_items calls the others
    for name in ("update_item", "put_item", "get_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self, *args, _original=original, **kwargs):
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)
    with mock_aws():
        aws.reset_clients()
        create_tables(settings.decisions_table_name, settings.monitoring_table_name, settings.idempotency_table_name)
        boto3.client("ssm").put_parameter(
            Name=f"{settings.parameter_prefix}daily-llm-budget-usd", Value=BUDGET_FOR_FIVE, Type="String"
        )
        topic_arn = boto3.client("sns").create_topic(Name=settings.alerts_topic_arn.rsplit(":", 1)[-1])["TopicArn"]
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        yield {"topic_arn": topic_arn, "queue_url": queue_url}
        aws.reset_clients()


def inbox(queue_url: str) -> list[dict]:
    sqs, found = boto3.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def remediating_incidents(store: IncidentStore, count: int) -> list[str]:
    ids = []
    for n in range(count):
        incident, _ = store.open_or_fold(
            incident_id=f"inc-{n:02d}",
            fingerprint=f"fp-{n}",
            correlation_id=f"c-{n}",
            issue={"service": f"svc-{n}", "issue_type": "exception"},
            origin="test",
        )
        assert store.transition(incident.incident_id, Status.REMEDIATING, reason="start", new_attempt=1)
        ids.append(incident.incident_id)
    return ids


def test_fifty_simultaneous_reservations_against_a_budget_for_five_grant_exactly_five(env, settings):
    # Given 50 incidents being remediated and a daily budget that fits 5 calls
    store = IncidentStore(settings.decisions_table_name)
    incidents = remediating_incidents(store, CALLS)
    guard = AgentOpsMonitor("engineer", settings=settings).budget_guard()
    get_runtime_parameters(settings)  # create the SSM client before the threads start
    assert guard.budget_status().limit_usd == pytest.approx(0.5)
    start = threading.Barrier(CALLS)

    def engineer_step(incident_id: str) -> bool:
        start.wait()
        reservation = guard.reserve(COST_PER_CALL, model="claude-sonnet-4-5")
        if reservation is None:
            reason = "daily LLM budget exhausted"
            assert store.transition(incident_id, Status.BUDGET_PAUSED, reason=reason)
            notify_budget_paused(env["topic_arn"], incident_id, reason)
            return False
        # The worst case happened: nothing is handed back that a later caller could use.
        reservation.reconcile(COST_PER_CALL)
        return True

    # When all 50 try to reserve at the same moment
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        granted = list(pool.map(engineer_step, incidents))

    # Then exactly 5 were granted, nothing is overspent, and the 45 others are paused with an alert each
    assert sum(granted) == 5
    status = guard.budget_status()
    assert status.reserved_usd == pytest.approx(0.0)
    assert status.spent_usd == pytest.approx(5 * COST_PER_CALL)
    assert status.spent_usd + status.reserved_usd <= status.limit_usd
    paused = {i for i, ok in zip(incidents, granted, strict=True) if not ok}
    assert {i for i in incidents if store.get(i).status == Status.BUDGET_PAUSED.value} == paused
    alerts = inbox(env["queue_url"])
    assert len(alerts) == 45
    assert {a["Subject"].split()[2] for a in alerts} == paused
    assert all("BUDGET_PAUSED" in a["Message"] for a in alerts)


def test_reconcile_moves_the_reservation_to_spent_once(env, settings):
    guard = BudgetGuard(settings.monitoring_table_name, 1.0)
    reservation = guard.reserve(0.30, model="claude-haiku-4-5")
    assert guard.budget_status().reserved_usd == pytest.approx(0.30)
    reservation.reconcile(0.12)
    reservation.reconcile(0.12)  # a retry path calling it again changes nothing
    status = guard.budget_status()
    assert (status.reserved_usd, status.spent_usd, status.remaining_usd) == pytest.approx((0.0, 0.12, 0.88))


def test_a_call_bigger_than_the_whole_budget_is_refused_without_a_write(env, settings, capsys):
    guard = BudgetGuard(
        settings.monitoring_table_name,
        0.05,
        environment="test",
        sink=AgentOpsMonitor("engineer", settings=settings).sink,
    )
    assert guard.reserve(0.10, model="claude-opus-4-1") is None
    assert guard.budget_status().reserved_usd == 0
    guard.sink.flush()
    assert '"LLMBudgetRefusals":[1.0]' in capsys.readouterr().out


def test_raising_the_budget_in_ssm_takes_effect_without_a_deploy(env, settings):
    guard = AgentOpsMonitor("engineer", settings=settings).budget_guard()
    assert guard.reserve(0.4, model="m") is not None
    assert guard.reserve(0.4, model="m") is None
    boto3.client("ssm").put_parameter(
        Name=f"{settings.parameter_prefix}daily-llm-budget-usd", Value="1.0", Type="String", Overwrite=True
    )
    assert guard.reserve(0.4, model="m") is not None


def test_the_budget_resets_when_the_utc_day_rolls_over(env, settings):
    day = [datetime(2026, 3, 2, 23, 59, tzinfo=UTC)]
    guard = BudgetGuard(settings.monitoring_table_name, 0.5, clock=lambda: day[0])
    assert guard.reserve(0.5, model="m") is not None
    assert guard.reserve(0.1, model="m") is None
    day[0] += timedelta(minutes=2)
    assert guard.reserve(0.5, model="m") is not None
    assert guard.budget_status().period == "2026-03-03"


def test_granted_reservations_publish_the_budget_used_gauge(env, settings, capsys):
    monitor = AgentOpsMonitor("engineer", settings=settings)
    guard = BudgetGuard(settings.monitoring_table_name, 1.0, environment="test", sink=monitor.sink)
    guard.reserve(0.25, model="m")
    monitor.flush()
    doc = next(json.loads(line) for line in capsys.readouterr().out.splitlines() if "LLMBudgetUsedPercent" in line)
    assert doc["LLMBudgetUsedPercent"] == [25.0]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["environment"]]


def test_an_absurd_reported_cost_is_capped_and_settled_instead_of_crashing_the_reconcile(env, settings):
    # Given a reservation, and a response that claimed 10**25 output tokens (about 1.5e20 USD at Sonnet prices)
    guard = BudgetGuard(settings.monitoring_table_name, 5.0)
    reservation = guard.reserve(0.1, model="claude-sonnet-4-5")
    absurd = load_price_table().llm_cost("claude-sonnet-4-5", 1_000, 10**25).cost_usd
    assert absurd > 1e20  # beyond the 28 digits Decimal keeps at 1e-9 USD: quantize used to raise
    # When it is reconciled, Then nothing raises, the reservation is released and the cost is capped, not dropped
    reservation.reconcile(absurd)
    status = guard.budget_status()
    assert status.reserved_usd == 0
    assert status.spent_usd == float(MAX_USD)
    assert guard.reserve(0.01, model="claude-sonnet-4-5") is None  # the day's budget is used up


@pytest.mark.parametrize("figure", [-3.0, float("nan"), float("-inf"), None, "0.2", True])
def test_a_figure_that_is_no_cost_charges_what_was_reserved(env, settings, figure):
    guard = BudgetGuard(settings.monitoring_table_name, 1.0)
    reservation = guard.reserve(0.30, model="claude-haiku-4-5")
    reservation.reconcile(figure)
    status = guard.budget_status()
    assert (status.reserved_usd, status.spent_usd) == pytest.approx((0.0, 0.30))


@pytest.mark.parametrize("estimate", [float("nan"), -1.0, None])
def test_an_estimate_that_is_no_cost_is_refused_without_a_write(env, settings, estimate):
    guard = BudgetGuard(settings.monitoring_table_name, 1.0)
    assert guard.reserve(estimate, model="m") is None
    assert guard.budget_status().reserved_usd == 0


@pytest.mark.parametrize("limit", [float("inf"), 1e400, float("nan")])
def test_a_non_finite_limit_never_crashes_a_reservation(env, settings, limit):
    # The parameters refuse such a limit (below); a guard built with one still decides, never raises.
    granted = BudgetGuard(settings.monitoring_table_name, limit).reserve(0.05, model="claude-sonnet-4-5")
    assert (granted is None) == (limit != limit)  # NaN is no limit at all: every call is refused


@pytest.mark.parametrize("value", ["inf", "Infinity", "1e400", "nan", "-1", str(MAX_DAILY_LLM_BUDGET_USD + 1)])
def test_a_daily_budget_that_is_not_finite_or_absurd_is_a_config_error(value):
    with pytest.raises(ConfigError, match="daily_llm_budget_usd"):
        parse_parameters({"daily-llm-budget-usd": value})
    assert parse_parameters({"daily-llm-budget-usd": str(MAX_DAILY_LLM_BUDGET_USD)}).daily_llm_budget_usd == 10_000
