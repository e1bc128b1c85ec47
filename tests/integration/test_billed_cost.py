"""Billed Lambda cost against moto: REPORT lines replace the in-handler estimate, once, for the right invocation."""

from __future__ import annotations

import importlib
import json
import math
import sys
import uuid
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from moto import mock_aws

from agentops_monitoring import AgentOpsMonitor, billing
from agentops_monitoring.billing import (
    BilledCostReconciler,
    Outcome,
    decode_subscription,
    encode_subscription,
    parse_report,
)
from agentops_monitoring.costs import OVERRIDE_ENV, PRICES_FILE, PriceTable, _build, load_price_table
from selfheal_core import aws
from selfheal_core.config import get_settings
from selfheal_core.ddb import from_item
from selfheal_core.incidents import IncidentStore
from tests.support.context import FakeLambdaContext
from tests.support.tables import create_tables

ENGINEER_LOGS = "/aws/lambda/selfheal-test-engineer"
QA_LOGS = "/aws/lambda/selfheal-test-qa"
GB_SECOND = 0.0000166667
REQUEST = 0.0000002


def report_line(
    request_id: str,
    *,
    duration_ms: float = 310.25,
    billed_ms: int | None = None,
    memory_mb: int = 512,
    init_ms: float | None = 845.61,
) -> str:
    """A REPORT line exactly as Lambda writes it (tab-separated; Billed Duration includes init since Aug 2025)."""
    if billed_ms is None:
        billed_ms = math.ceil(duration_ms + (init_ms or 0.0))
    init = f"Init Duration: {init_ms:.2f} ms\t" if init_ms is not None else ""
    return (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed_ms} ms\t"
        f"Memory Size: {memory_mb} MB\tMax Memory Used: 97 MB\t{init}"
    )


def delivery(log_group: str, *messages: str) -> dict[str, Any]:
    return encode_subscription(
        {
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": log_group,
            "logStream": "2026/11/27/[$LATEST]0123456789abcdef",
            "subscriptionFilters": ["selfheal-test-billed-cost"],
            "logEvents": [
                {"id": str(n), "timestamp": 1_795_780_000_000 + n, "message": m} for n, m in enumerate(messages)
            ],
        }
    )


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def aws_env(settings, monkeypatch):
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    _build.cache_clear()
    with mock_aws():
        aws.reset_clients()
        create_tables(settings.decisions_table_name, settings.monitoring_table_name, settings.idempotency_table_name)
        yield
        aws.reset_clients()
    _build.cache_clear()


@pytest.fixture
def incident(aws_env, settings) -> str:
    store = IncidentStore(settings.decisions_table_name)
    created, _ = store.open_or_fold(
        incident_id="inc-1",
        fingerprint="fp-1",
        correlation_id="corr-1",
        issue={"service": "checkout", "issue_type": "latency"},
        origin="test",
    )
    return created.incident_id


@pytest.fixture
def reconciler(aws_env, settings) -> BilledCostReconciler:
    return BilledCostReconciler(
        environment=settings.environment,
        monitoring_table=settings.monitoring_table_name,
        decisions_table=settings.decisions_table_name,
        prices=load_price_table,
        agents_by_log_group={ENGINEER_LOGS: "engineer", QA_LOGS: "qa"},
    )


def invoke(
    settings, incident_id: str | None, *, duration_s: float = 0.3, memory_mb: int = 512, agent: str = "engineer"
) -> tuple[str, float]:
    """One instrumented invocation: the monitor records its estimate; returns (request id, estimate)."""
    monitor = AgentOpsMonitor(agent, settings=settings)
    monitor.begin_invocation({"detail": {"metadata": {"incident_id": incident_id}}} if incident_id else {})
    context = FakeLambdaContext(memory_limit_in_mb=memory_mb)
    monitor.settle(context, duration_s)  # prices the invocation and writes it with its held records
    return context.aws_request_id, load_price_table().lambda_cost(duration_s, memory_mb)


def lambda_records(settings, pk: str) -> list[dict[str, Any]]:
    items = aws.table(settings.monitoring_table_name).query(KeyConditionExpression=Key("pk").eq(pk))["Items"]
    return [from_item(i) for i in items if i.get("kind") == "lambda"]


def incident_cost(settings, incident_id: str) -> float:
    return IncidentStore(settings.decisions_table_name).get(incident_id).cost_usd


# ---------------------------------------------------------------------- REPORT lines


def test_a_real_report_line_parses_with_init_duration():
    rid = str(uuid.uuid4())
    report = parse_report(
        report_line(rid) + "\nXRAY TraceId: 1-5e1b4151-5ac6c58f5b5daa5d2b4e8d52\tSegmentId: 1\tSampled: true"
    )
    assert report == billing.Report(
        request_id=rid, duration_ms=310.25, billed_ms=1156, memory_mb=512, max_memory_mb=97, init_ms=845.61
    )
    warm = parse_report(report_line(rid, init_ms=None))
    assert warm is not None and warm.init_ms is None and warm.billed_ms == 311


@pytest.mark.parametrize(
    "line",
    [
        "",
        "START RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f Version: $LATEST",
        "REPORT RequestId: not-a-uuid\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 1 MB",
        "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f\tDuration: 1.00 ms\tMemory Size: 128 MB",  # no billed
        "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f\tDuration: -1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB",
        "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f\tDuration: nan ms\tBilled Duration: 1 ms\tMemory Size: 128 MB",
        "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f\tDuration: 1.00 ms\tBilled Duration: 99999999999 ms\t"
        "Memory Size: 128 MB",
        "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 99999 MB",
        "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB"
        '\tInjected: {"cost_usd": 0}',
        '{"level": "INFO", "message": "REPORT RequestId: 8f5e9d5a-2d3c-4c7b-9a7e-0c1b2a3d4e5f"}',
    ],
)
def test_lines_that_are_not_well_formed_report_lines_are_not_reports(line):
    assert parse_report(line) is None


def test_the_subscription_envelope_round_trips_and_refuses_garbage():
    event = delivery(ENGINEER_LOGS, "a", "b")
    assert decode_subscription(event)["logGroup"] == ENGINEER_LOGS
    for bad in ({}, {"awslogs": {"data": "%%%not base64"}}, {"awslogs": {"data": 42}}, []):
        with pytest.raises((ValueError, TypeError, OSError)):
            decode_subscription(bad)


# ---------------------------------------------------------------------- reconciliation


def test_a_cold_invocation_is_billed_from_its_report_line_and_the_incident_follows(settings, incident, reconciler):
    # Given an engineer invocation of an incident, estimated in the handler at 0.3 s (no init phase)
    request_id, estimate = invoke(settings, incident)
    before = incident_cost(settings, incident)
    assert before >= estimate  # the estimate (and the events record) went into the incident total
    # When its REPORT line (cold start: 845.61 ms init, billed 1156 ms at 512 MB) is delivered
    counts = reconciler.handle(
        delivery(
            ENGINEER_LOGS,
            f"START RequestId: {request_id} Version: $LATEST",
            report_line(request_id),
            f"END RequestId: {request_id}",
        )
    )
    # Then the cost record holds the billed figure, recomputed from the line itself, and keeps the estimate
    assert counts == {"not_a_report": 2, "billed": 1}
    [record] = lambda_records(settings, f"INCIDENT#{incident}")
    recomputed = 1156 / 1000 * 512 / 1024 * GB_SECOND + REQUEST
    assert record["cost_usd"] == pytest.approx(recomputed, abs=1e-12)
    assert record["cost_source"] == "billed" and record["estimated_usd"] == pytest.approx(estimate)
    assert record["billed_duration_ms"] == 1156 and record["init_duration_ms"] == pytest.approx(845.61)
    # And the incident total moved by exactly billed - estimate: it now carries the bill, not the estimate
    assert incident_cost(settings, incident) == pytest.approx(before - estimate + recomputed, abs=1e-12)
    assert recomputed > 3 * estimate  # the init phase the handler cannot see


def test_a_replayed_batch_changes_nothing(settings, incident, reconciler):
    # Given a REPORT line already reconciled
    request_id, _ = invoke(settings, incident)
    event = delivery(ENGINEER_LOGS, report_line(request_id))
    reconciler.handle(event)
    after_first = (incident_cost(settings, incident), lambda_records(settings, f"INCIDENT#{incident}"))
    # When CloudWatch Logs (or a Lambda retry) delivers the same batch again
    assert reconciler.handle(event) == {"duplicate": 1}
    # Then neither the record nor the incident total moves
    assert (incident_cost(settings, incident), lambda_records(settings, f"INCIDENT#{incident}")) == after_first


def test_a_forged_report_line_in_another_agents_log_group_is_ignored(settings, incident, reconciler):
    # Given the engineer's invocation, and QA code printing a REPORT line naming the engineer's request
    request_id, estimate = invoke(settings, incident)
    forged = report_line(request_id, billed_ms=1, duration_ms=0.5, init_ms=None)
    # When it arrives through QA's log group
    assert reconciler.handle(delivery(QA_LOGS, forged)) == {"implausible": 1}
    # Then the engineer's estimate stands, and its real REPORT line still reconciles afterwards
    [record] = lambda_records(settings, f"INCIDENT#{incident}")
    assert record["cost_source"] == "estimate" and record["cost_usd"] == pytest.approx(estimate)
    assert reconciler.handle(delivery(ENGINEER_LOGS, report_line(request_id))) == {"billed": 1}


@pytest.mark.parametrize(
    "forged",
    [
        {"memory_mb": 128},  # not the memory the invocation ran with
        {"billed_ms": 5, "duration_ms": 4.0, "init_ms": None},  # less than the handler itself measured (300 ms)
    ],
)
def test_a_forged_report_line_in_the_same_log_group_that_does_not_fit_the_invocation_is_ignored(
    settings, incident, reconciler, forged
):
    # Given an engineer invocation the monitor measured at 300 ms and 512 MB
    request_id, estimate = invoke(settings, incident)
    # When a line with the right request id but an impossible bill arrives first (printed by the handler)
    assert reconciler.handle(delivery(ENGINEER_LOGS, report_line(request_id, **forged))) == {"implausible": 1}
    # Then nothing changed, and the platform's real line still wins
    [record] = lambda_records(settings, f"INCIDENT#{incident}")
    assert record["cost_usd"] == pytest.approx(estimate)
    assert reconciler.handle(delivery(ENGINEER_LOGS, report_line(request_id))) == {"billed": 1}


def test_an_invocation_that_died_before_the_monitor_is_billed_to_its_agent_once(settings, aws_env, reconciler):
    # Given a REPORT line for a request the monitor never saw (a timeout, a crash at import)
    request_id = str(uuid.uuid4())
    event = delivery(ENGINEER_LOGS, report_line(request_id, duration_ms=180_000.0, init_ms=None))
    # When it is reconciled, twice
    assert reconciler.handle(event) == {"unlinked": 1}
    assert reconciler.handle(event) == {"duplicate": 1}
    # Then the agent carries the billed cost once: nothing the account paid goes unrecorded
    [record] = lambda_records(settings, "AGENT#engineer")
    assert record["cost_source"] == "billed" and record["request_id"] == request_id
    assert record["cost_usd"] == pytest.approx(180.0 * 0.5 * GB_SECOND + REQUEST)


def test_a_failure_between_reading_and_writing_leaves_nothing_half_done_and_the_retry_finishes(
    settings, incident, reconciler, monkeypatch
):
    # Given the write of the billed figure fails once (throttled) after the link was read
    request_id, estimate = invoke(settings, incident)
    before = incident_cost(settings, incident)
    real = billing.transact
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")
        return real(items)

    monkeypatch.setattr(billing, "transact", flaky)
    event = delivery(ENGINEER_LOGS, report_line(request_id))
    # When the first delivery fails
    with pytest.raises(ClientError):
        reconciler.handle(event)
    # Then neither the record nor the incident changed (one transaction)
    [record] = lambda_records(settings, f"INCIDENT#{incident}")
    assert record["cost_source"] == "estimate" and incident_cost(settings, incident) == pytest.approx(before)
    # And Lambda's retry of the same batch finishes the step
    assert reconciler.handle(event) == {"billed": 1}
    [record] = lambda_records(settings, f"INCIDENT#{incident}")
    assert incident_cost(settings, incident) == pytest.approx(before - estimate + record["billed_usd"], abs=1e-12)


def test_the_estimate_and_its_link_are_written_together(settings, incident, monkeypatch):
    # Given the monitor's transaction fails
    def refuse(**_request):
        raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "no"}}, "TransactWriteItems")

    monkeypatch.setattr(aws.client("dynamodb"), "transact_write_items", refuse)
    monitor = AgentOpsMonitor("engineer", settings=settings)
    monitor.begin_invocation({"detail": {"metadata": {"incident_id": incident}}})
    context = FakeLambdaContext()
    # When the invocation ends (monitoring never replaces the handler's outcome)
    monitor.end_invocation(context, 0.3, success=True)
    # Then there is neither an estimate nor a link: the REPORT line will be recorded as the agent's, not twice
    assert lambda_records(settings, f"INCIDENT#{incident}") == []
    link = (
        aws.table(settings.monitoring_table_name)
        .get_item(Key={"pk": billing.link_pk(context.aws_request_id), "sk": billing.LINK_SK})
        .get("Item")
    )
    assert link is None


def count_calls(monkeypatch) -> list[str]:
    from botocore.client import BaseClient

    calls: list[str] = []
    original = BaseClient._make_api_call

    def counting(self, operation, params):
        calls.append(operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    return calls


def test_a_batch_of_report_lines_is_reconciled_with_one_read_and_one_transaction(
    settings, incident, reconciler, monkeypatch
):
    # Given three engineer invocations of one incident, and one that died before its monitor
    invoked = [invoke(settings, incident) for _ in range(3)]
    before = incident_cost(settings, incident)
    died = str(uuid.uuid4())
    lines = [report_line(r) for r, _ in invoked]
    calls = count_calls(monkeypatch)
    # When one delivery carries their REPORT lines (the first one twice)
    counts = reconciler.handle(
        delivery(ENGINEER_LOGS, *lines, report_line(died, init_ms=None), lines[0], "END RequestId: x")
    )
    # Then every line is reconciled as one by one, the repeat counted as a duplicate
    assert counts == {"billed": 3, "unlinked": 1, "duplicate": 1, "not_a_report": 1}
    # And with one BatchGetItem and one transaction (not a read and a write per line)
    assert calls == ["BatchGetItem", "TransactWriteItems"]
    records = lambda_records(settings, f"INCIDENT#{incident}")
    assert [r["cost_source"] for r in records] == ["billed"] * 3
    moved = sum(
        r["billed_usd"] - e for r, (_, e) in zip(sorted(records, key=lambda r: r["request_id"]), sorted(invoked))
    )
    assert incident_cost(settings, incident) == pytest.approx(before + moved, abs=1e-12)
    [agent_record] = lambda_records(settings, "AGENT#engineer")
    assert agent_record["request_id"] == died
    # And the same delivery again changes nothing
    assert reconciler.handle(delivery(ENGINEER_LOGS, *lines)) == {"duplicate": 3}


def test_a_batch_whose_transaction_is_refused_is_reconciled_line_by_line(settings, incident, reconciler):
    # Given two invocations, one of an incident deleted since (its total cannot move)
    gone = (
        IncidentStore(settings.decisions_table_name)
        .open_or_fold(
            incident_id="inc-2", fingerprint="fp-2", correlation_id="corr-2", issue={"service": "s"}, origin="test"
        )[0]
        .incident_id
    )
    kept_request, _ = invoke(settings, incident)
    gone_request, _ = invoke(settings, gone)
    aws.table(settings.decisions_table_name).delete_item(Key={"pk": f"INCIDENT#{gone}", "sk": "#META"})
    # When both lines arrive in one delivery (the batch transaction is cancelled)
    counts = reconciler.handle(delivery(ENGINEER_LOGS, report_line(kept_request), report_line(gone_request)))
    # Then each line is billed on its own, the deleted incident's record included
    assert counts == {"billed": 2}
    assert [r["cost_source"] for r in lambda_records(settings, f"INCIDENT#{gone}")] == ["billed"]
    assert [r["cost_source"] for r in lambda_records(settings, f"INCIDENT#{incident}")] == ["billed"]


def test_a_deleted_incident_does_not_block_the_record_from_being_billed(settings, incident, reconciler):
    request_id, _ = invoke(settings, incident)
    aws.table(settings.decisions_table_name).delete_item(Key={"pk": f"INCIDENT#{incident}", "sk": "#META"})
    assert reconciler.handle(delivery(ENGINEER_LOGS, report_line(request_id))) == {"billed": 1}
    [record] = lambda_records(settings, f"INCIDENT#{incident}")
    assert record["cost_source"] == "billed"


def test_control_messages_and_unknown_log_groups(settings, aws_env, reconciler):
    control = encode_subscription(
        {
            "messageType": "CONTROL_MESSAGE",
            "logGroup": "",
            "logEvents": [
                {"id": "1", "timestamp": 0, "message": "CWL CONTROL MESSAGE: Checking health of destination Lambda."}
            ],
        }
    )
    assert reconciler.handle(control) == {}
    with pytest.raises(ValueError, match="not an agent's"):
        reconciler.handle(delivery("/aws/lambda/someone-else", report_line(str(uuid.uuid4()))))


def test_costs_use_billed_figures_once_they_arrive_and_the_estimate_until_then(settings, incident, reconciler):
    from selfheal.ops.reads import lambda_cost_sources

    # Given two invocations, one of which has its REPORT line reconciled
    billed_id, _ = invoke(settings, incident)
    _, pending_estimate = invoke(settings, incident)
    reconciler.handle(delivery(ENGINEER_LOGS, report_line(billed_id)))
    records = lambda_records(settings, f"INCIDENT#{incident}")
    # Then the Lambda total is the billed figure plus the remaining estimate
    sources = lambda_cost_sources(records)
    billed = 1156 / 1000 * 0.5 * GB_SECOND + REQUEST
    assert sources["billed_usd"] == pytest.approx(billed) and sources["billed_invocations"] == 1
    assert sources["estimated_usd"] == pytest.approx(pending_estimate) and sources["awaiting_report"] == 1
    assert sources["total_usd"] == pytest.approx(billed + pending_estimate)


def test_prices_come_from_the_table_including_overrides(settings, aws_env, monkeypatch):
    # Given an override of the Lambda GB-second price (a region with other prices)
    data = json.loads(PRICES_FILE.read_text())
    override = {"aws": {**data["aws"], "lambda_gb_second": {"x86_64": 0.00002, "arm64": 0.000016}}}
    monkeypatch.setenv(OVERRIDE_ENV, json.dumps(override))
    _build.cache_clear()
    reconciler = BilledCostReconciler(
        environment=settings.environment,
        monitoring_table=settings.monitoring_table_name,
        decisions_table=settings.decisions_table_name,
        prices=load_price_table,
        agents_by_log_group={ENGINEER_LOGS: "engineer"},
    )
    request_id = str(uuid.uuid4())
    reconciler.handle(delivery(ENGINEER_LOGS, report_line(request_id, billed_ms=2000, init_ms=None)))
    [record] = lambda_records(settings, "AGENT#engineer")
    assert record["cost_usd"] == pytest.approx(2.0 * 0.5 * 0.00002 + REQUEST)
    assert isinstance(load_price_table(), PriceTable)


def test_the_lambda_handler_reconciles_a_delivery(settings, aws_env, monkeypatch):
    # Given the reconciler function's environment, as the stack sets it
    monkeypatch.setenv("AGENT_LOG_GROUPS", json.dumps({ENGINEER_LOGS: "engineer"}))
    sys.modules.pop("lambdas.billing.handler", None)
    handler = importlib.import_module("lambdas.billing.handler")
    request_id, _ = invoke(settings, None)
    # When CloudWatch Logs invokes it with a batch
    result = handler.handler(delivery(ENGINEER_LOGS, report_line(request_id)), FakeLambdaContext())
    # Then the invocation is billed
    assert result == {"billed": 1}
    assert Outcome.BILLED.value in result
