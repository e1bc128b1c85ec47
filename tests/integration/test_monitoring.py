"""The monitor against moto: records, keys and GSIs, costs, EMF output, timeline, instrument, AgentOps."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from moto import mock_aws

from agentops_monitoring import AgentEventType, AgentOpsMonitor, tracing
from agentops_monitoring.costs import OVERRIDE_ENV, PRICES_FILE, _build
from selfheal_core import aws
from selfheal_core.agent import instrument
from selfheal_core.config import get_settings
from selfheal_core.incidents import IncidentStore, Status
from tests.support.tables import create_tables


class Ticker:
    """A clock that moves 1 ms per reading, so records have a known order."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def emitted(out: str) -> set[tuple[str, str, tuple[str, ...]]]:
    found = set()
    for doc in emf(out):
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dims in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], tuple(sorted(dims))))
    return found


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
def monitor(aws_env, settings) -> AgentOpsMonitor:
    return AgentOpsMonitor("engineer", settings=settings, clock=Ticker())


def monitoring_items(settings, **query) -> list[dict[str, Any]]:
    return boto3.resource("dynamodb").Table(settings.monitoring_table_name).query(**query)["Items"]


# ---------------------------------------------------------------------- costs
def independent_llm_cost(model_entry: str, usage: dict[str, int]) -> Decimal:
    """Straight from prices.json, without the PriceTable code."""
    price = json.loads(PRICES_FILE.read_text())["llm"][model_entry][-1]
    write_1h = usage.get("cache_write_1h_input_tokens", 0)
    per_mtok = (
        usage["input_tokens"] * Decimal(str(price["input"]))
        + usage["output_tokens"] * Decimal(str(price["output"]))
        + (usage["cache_creation_input_tokens"] - write_1h) * Decimal(str(price["cache_write_5m"]))
        + write_1h * Decimal(str(price["cache_write_1h"]))
        + usage["cache_read_input_tokens"] * Decimal(str(price["cache_read"]))
    )
    return per_mtok / Decimal(1_000_000)


def test_costs_recomputed_from_the_recorded_raw_usage_agree_to_the_cent(monitor, incident, settings, lambda_context):
    # Given an engineer invocation that makes three model calls for one incident
    monitor.bind(incident_id=incident, correlation_id="corr-1")
    calls = [
        ("claude-sonnet-4-5-20250929", 12_000, 3_500, 40_000, 0),
        ("claude-sonnet-4-5-20250929", 9_000, 4_000, 0, 40_000),
        ("claude-haiku-4-5", 300_000, 90_000, 5_000, 150_000),
    ]
    returned = sum(monitor.track_llm_usage(*call) for call in calls)
    returned += monitor.track_lambda_execution(lambda_context, 2.345)

    # When the cost records are read back
    records = monitoring_items(
        settings, KeyConditionExpression=Key("pk").eq(f"INCIDENT#{incident}") & Key("sk").begins_with("COST#")
    )

    # Then each LLM record recomputed from its raw usage matches, and the totals agree to the cent
    llm = [r for r in records if r["kind"] == "llm"]
    assert len(llm) == 3
    for record in llm:
        usage = {k: int(v) for k, v in record["usage"].items()}
        expected = independent_llm_cost(record["pricing"]["priced_as"], usage)
        assert abs(record["cost_usd"] - expected) < Decimal("0.000001")
    recorded_total = sum(r["cost_usd"] for r in records)
    assert {r["kind"] for r in records} == {"llm", "lambda", "events"}
    assert round(float(recorded_total), 2) == round(returned, 2)
    incident_total = IncidentStore(settings.decisions_table_name).get(incident).cost_usd
    assert round(incident_total, 2) == round(float(recorded_total), 2)
    assert abs(incident_total - float(recorded_total)) < 1e-6


def test_every_cost_is_attributed_to_agent_incident_and_day(monitor, incident, settings):
    monitor.bind(incident_id=incident)
    monitor.track_llm_usage("claude-haiku-4-5", 1000, 200)
    [by_day] = monitoring_items(
        settings, IndexName="gsi2", KeyConditionExpression=Key("gsi2pk").eq("COST#DAY#2026-03-02")
    )
    [by_agent] = monitoring_items(
        settings, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("COST#AGENT#engineer")
    )
    assert by_day == by_agent
    assert (by_day["agent"], by_day["incident_id"], by_day["day"]) == ("engineer", incident, "2026-03-02")
    assert by_day["gsi2sk"].startswith("engineer#2026-03-02T10:00")


def test_an_unknown_model_is_flagged_on_the_record_in_the_log_and_as_a_metric(
    monitor, incident, settings, capsys, caplog
):
    monitor.bind(incident_id=incident)
    cost = monitor.track_llm_usage("claude-mystery-7", 10_000, 1_000)
    monitor.flush()
    out = capsys.readouterr().out
    [record] = monitoring_items(settings, KeyConditionExpression=Key("pk").eq(f"INCIDENT#{incident}"))
    assert cost > 0 and record["unknown_model"] is True and record["pricing"]["source"] == "fallback"
    assert any(
        r.levelname == "WARNING" and r.getMessage() == "unknown model priced by the fallback rule"
        for r in caplog.records
    )
    assert ("AgentOps/Costs", "UnpricedModelCalls", ("agent", "environment")) in emitted(out)


def test_price_call_prices_without_recording(monitor, settings):
    from lambdas.engineer.providers.base import LlmUsage

    cost = monitor.price_call(LlmUsage("claude-sonnet-4-5", 100_000, 8_000))
    assert cost == pytest.approx(0.3 + 0.12)
    assert (
        monitoring_items(settings, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("COST#AGENT#engineer"))
        == []
    )


def test_the_ssm_price_override_is_picked_up_without_a_deploy(monitor, settings):
    override = {
        "llm": {
            "claude-haiku-4-5": [
                {
                    "effective_date": "2025-01-01",
                    "input": 2.0,
                    "output": 10.0,
                    "cache_write_5m": 2.5,
                    "cache_write_1h": 4.0,
                    "cache_read": 0.2,
                }
            ]
        }
    }
    boto3.client("ssm").put_parameter(
        Name=f"{settings.parameter_prefix}prices-override", Value=json.dumps(override), Type="String"
    )
    assert monitor.track_llm_usage("claude-haiku-4-5", 1_000_000, 0) == pytest.approx(2.0)


# ---------------------------------------------------------------------- records, keys, GSIs
def test_decision_event_and_collaboration_records_land_with_their_keys_and_gsis(monitor, incident, settings):
    monitor.bind(incident_id=incident, correlation_id="corr-1")
    monitor.track_llm_usage("claude-haiku-4-5", 1_000, 100)
    decision = monitor.record_decision(
        "propose_fix",
        [{"thought": "latency on checkout", "action": "raise memory", "observation": "p95 3.2 s"}],
        {"attempt": 1},
        {"kind": "config"},
        0.8,
        model="claude-haiku-4-5",
    )
    monitor.record_event(AgentEventType.CODE_GENERATED, {"kind": "config"})
    monitor.record_collaboration("engineer", "qa", "FixProposed")

    decisions = boto3.resource("dynamodb").Table(settings.decisions_table_name)
    [by_agent] = decisions.query(IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("AGENT#engineer"))["Items"]
    assert by_agent["pk"] == f"INCIDENT#{incident}" and by_agent["sk"].startswith("DECISION#2026-03-02T10:00")
    assert by_agent["reasoning_chain"] == [
        {"thought": "latency on checkout", "action": "raise memory", "observation": "p95 3.2 s"}
    ]
    assert by_agent["confidence_score"] == Decimal("0.8") and by_agent["model"] == "claude-haiku-4-5"
    assert by_agent["correlation_id"] == "corr-1" and by_agent["agent"] == "engineer"
    assert by_agent["cost_usd"] > 0 and float(by_agent["cost_usd"]) == pytest.approx(decision["cost_usd"])
    assert by_agent["created_at"].startswith("2026-03-02T10:00")

    [event] = monitoring_items(
        settings, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("EVENT#code_generated")
    )
    assert (
        event["pk"] == f"INCIDENT#{incident}"
        and event["sk"].startswith("EVENT#")
        and event["data"] == {"kind": "config"}
    )
    assert event["ttl"] > 0

    [message] = monitoring_items(
        settings, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("COLLAB#2026-03-02")
    )
    assert message["pk"] == f"INCIDENT#{incident}" and message["sk"].startswith("MSG#")
    assert message["gsi1sk"].endswith("#engineer#qa") and message["flow"] == "engineer->qa"
    assert message["message_type"] == "FixProposed"


def test_records_without_an_incident_belong_to_their_agent(monitor, settings):
    monitor.record_event("event_rejected", {"reason": "bad"})
    [item] = monitoring_items(settings, KeyConditionExpression=Key("pk").eq("AGENT#engineer"))
    assert item["event_type"] == "event_rejected" and item["incident_id"] is None


@pytest.mark.parametrize("confidence", [-0.1, 1.01])
def test_confidence_must_be_between_0_and_1(monitor, confidence):
    with pytest.raises(ValueError):
        monitor.record_decision("triage", [], {}, {}, confidence)


def test_large_inputs_and_outputs_are_capped_with_their_size(monitor, incident, settings):
    monitor.bind(incident_id=incident)
    item = monitor.record_decision("triage", [{"thought": "x" * 5_000}] * 40, {"log": "y" * 50_000}, {"ok": True}, 0.5)
    assert item["inputs"]["truncated"] is True and item["inputs"]["size_chars"] > 50_000
    assert len(item["reasoning_chain"]) == 25 and len(item["reasoning_chain"][0]["thought"]) == 1_000
    assert item["outputs"] == {"ok": True}


def test_event_types_must_be_metric_safe_names(monitor):
    with pytest.raises(ValueError):
        monitor.record_event("Issue Detected!", {})


# ---------------------------------------------------------------------- EMF
def test_emf_output_has_the_namespaces_names_and_dimensions_the_dashboards_use(
    monitor, incident, capsys, lambda_context
):
    monitor.bind(incident_id=incident)
    monitor.record_event(AgentEventType.ISSUE_DETECTED, {})
    monitor.record_event(AgentEventType.TEST_FAILED, {})
    monitor.record_decision("triage", [], {}, {}, 0.9)
    monitor.record_collaboration("manager", "engineer", "RemediationRequested")
    monitor.track_llm_usage("claude-sonnet-4-5", 1_000, 100, 10, 20)
    monitor.track_lambda_execution(lambda_context, 0.5)
    monitor.record_status(Status.RESOLVED, incident_cost_usd=0.42)
    monitor.flush()
    out = capsys.readouterr().out
    found = emitted(out)
    expected = {
        ("AgentOps/Events", "issue_detected", ("agent", "environment")),
        ("AgentOps/Events", "test_failed", ("agent", "environment")),
        ("AgentOps/Events", "decision_made", ("agent", "environment")),
        ("AgentOps/Events", "IncidentTransitions", ("environment", "status")),
        ("AgentOps/Collaboration", "MessageCount", ("environment", "flow")),
        ("AgentOps/Collaboration", "AgentCommunication", ("environment", "message_type")),
        ("AgentOps/Costs", "LLMCost", ("agent", "environment")),
        ("AgentOps/Costs", "LLMCost", ("environment", "model")),
        ("AgentOps/Costs", "LLMTokens", ("environment", "model", "token_type")),
        ("AgentOps/Costs", "LambdaExecutionCost", ("agent", "environment")),
        ("AgentOps/Costs", "EventCost", ("agent", "environment")),
        ("AgentOps/Costs", "TotalCost", ("agent", "environment")),
        ("AgentOps/Costs", "TotalCost", ("environment",)),
        ("AgentOps/Costs", "ResolvedIncidentCost", ("environment",)),
    }
    assert expected <= found
    docs = emf(out)
    # Never an incident id or Powertools' `service` as a dimension; values are the real ones.
    for doc in docs:
        assert "service" not in doc and incident not in json.dumps(doc["_aws"])
        assert doc["environment"] == "test"
    flows = [d for d in docs if "MessageCount" in d]
    assert flows[0]["flow"] == "manager->engineer" and flows[0]["MessageCount"] == [1.0]


def test_metrics_are_batched_per_namespace_and_dimensions_not_one_line_per_call(monitor, capsys):
    for _ in range(20):
        monitor.record_event(AgentEventType.CODE_GENERATED, {})
    monitor.flush()
    [doc] = emf(capsys.readouterr().out)
    assert doc["code_generated"] == [1.0] * 20


# ---------------------------------------------------------------------- timeline
def test_timeline_merges_decisions_events_messages_and_costs_in_order(monitor, incident, settings):
    monitor.bind(incident_id=incident, correlation_id="corr-1")
    monitor.record_event(AgentEventType.ISSUE_DETECTED, {"service": "checkout"})
    monitor.track_llm_usage("claude-haiku-4-5", 1_000, 100)
    monitor.record_decision("triage", [{"thought": "t", "action": "a", "observation": "o"}], {}, {}, 0.7)
    monitor.record_collaboration("manager", "engineer", "RemediationRequested")
    other = AgentOpsMonitor("qa", settings=settings, clock=Ticker(datetime(2026, 3, 2, 9, 0, tzinfo=UTC)))
    other.bind(incident_id=incident)
    other.record_event(AgentEventType.TEST_PASSED, {})  # earlier clock: must sort first

    entries = monitor.timeline(incident)
    assert [e["kind"] for e in entries] == ["event", "event", "cost", "decision", "message"]
    assert entries[0]["event_type"] == "test_passed" and entries[2]["cost_kind"] == "llm"
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert all("pk" not in e and "gsi1pk" not in e for e in entries)


# ---------------------------------------------------------------------- instrument + AgentOps
def agentops_modules() -> list[str]:
    return [name for name in sys.modules if name == "agentops" or name.startswith("agentops.")]


def test_instrument_binds_ids_prices_the_invocation_flushes_and_never_imports_agentops(
    monitor, incident, settings, capsys, lambda_context, monkeypatch
):
    for name in agentops_modules():
        monkeypatch.delitem(sys.modules, name)
    event = {
        "detail-type": "FixRejected",
        "detail": {"metadata": {"incident_id": incident, "correlation_id": "corr-9"}},
    }

    @instrument(monitor)
    def handler(event, context):
        monitor.record_event(AgentEventType.CODE_GENERATED, {})
        return {"ok": True}

    assert handler(event, lambda_context) == {"ok": True}
    out = capsys.readouterr().out
    assert "agentops" not in sys.modules
    kinds = {
        r["kind"]
        for r in monitoring_items(
            settings, KeyConditionExpression=Key("pk").eq(f"INCIDENT#{incident}") & Key("sk").begins_with("COST#")
        )
    }
    assert kinds == {"lambda", "events"}
    [event_item] = monitoring_items(
        settings, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("EVENT#code_generated")
    )
    assert event_item["correlation_id"] == "corr-9"
    assert ("AgentOps/Costs", "LambdaExecutionCost", ("agent", "environment")) in emitted(out)
    assert IncidentStore(settings.decisions_table_name).get(incident).cost_usd > 0


def test_instrument_flushes_and_re_raises_when_the_handler_fails(monitor, capsys, lambda_context):
    @instrument(monitor)
    def handler(event, context):
        monitor.record_event(AgentEventType.TEST_FAILED, {})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        handler({}, lambda_context)
    assert ("AgentOps/Events", "test_failed", ("agent", "environment")) in emitted(capsys.readouterr().out)


def test_a_later_invocation_does_not_inherit_the_previous_incident(monitor, incident, settings, lambda_context):
    @instrument(monitor)
    def handler(event, context):
        return monitor.incident_id

    assert (
        handler({"detail": {"metadata": {"incident_id": incident, "correlation_id": "c"}}}, lambda_context) == incident
    )
    assert handler({"detail-type": "Scheduled Event", "detail": {}}, lambda_context) is None


class FakeAgentOps:
    """Stands in for the SDK with the 0.4.21 call shapes (checked against the real one below)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.SUCCESS, self.ERROR = "Success", "Error"
        test = self

        class Span:
            def __init__(self) -> None:
                self.attributes: dict[str, Any] = {}

            def set_attribute(self, key, value):
                self.attributes[key] = value

        class Tracer:
            def make_span(self, operation_name, span_kind, version=None, attributes=None):
                test.calls.append(("make_span", (operation_name, span_kind, attributes)))
                return Span(), None, "token"

            def finalize_span(self, span, token):
                test.calls.append(("finalize_span", token))

        self.span = Span()
        self.tracer = Tracer()

    def modules(self) -> dict[str, types.ModuleType]:
        root = types.ModuleType("agentops")
        root.init = lambda **kw: self.calls.append(("init", kw))
        root.start_trace = lambda trace_name, tags=None: (
            self.calls.append(("start_trace", (trace_name, tags))) or types.SimpleNamespace(span=self.span)
        )
        root.end_trace = lambda ctx, end_state=None: self.calls.append(("end_trace", end_state))
        root.SUCCESS, root.ERROR = self.SUCCESS, self.ERROR
        core = types.ModuleType("agentops.sdk.core")
        core.tracer = self.tracer
        return {"agentops": root, "agentops.sdk": types.ModuleType("agentops.sdk"), "agentops.sdk.core": core}


def test_with_an_agentops_key_one_trace_per_invocation_is_tagged_spanned_and_ended(
    monitor, incident, settings, lambda_context, monkeypatch
):
    from aws_lambda_powertools.utilities import parameters

    fake = FakeAgentOps()
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(tracing, "_initialized_with", None)
    boto3.client("secretsmanager").create_secret(
        Name=settings.secret_name, SecretString=json.dumps({"agentops_api_key": "k"})
    )
    parameters.clear_caches()

    @instrument(monitor)
    def handler(event, context):
        monitor.track_llm_usage("claude-haiku-4-5", 1_000, 100, 0, 500)
        return "done"

    try:
        assert (
            handler({"detail": {"metadata": {"incident_id": incident, "correlation_id": "corr-1"}}}, lambda_context)
            == "done"
        )
    finally:
        parameters.clear_caches()

    names = [c[0] for c in fake.calls]
    assert names == ["init", "start_trace", "make_span", "finalize_span", "end_trace"]
    init = fake.calls[0][1]
    assert init["api_key"] == "k" and init["auto_start_session"] is False and init["instrument_llm_calls"] is False
    assert fake.calls[1][1][1] == ["agent:engineer", "environment:test"]
    assert fake.span.attributes["trace.metadata.incident_id"] == incident
    assert "incident_id:inc-1" in fake.span.attributes["agentops.tags"]
    llm_attributes = fake.calls[2][1][2]
    assert fake.calls[2][1][1] == "llm" and llm_attributes["gen_ai.usage.cache_read_input_tokens"] == 500
    assert fake.calls[-1] == ("end_trace", "Success")


def test_the_fake_matches_the_real_agentops_0_4_21_api():
    import inspect

    import agentops
    from agentops.sdk.core import TracingCore

    assert {
        "api_key",
        "auto_start_session",
        "instrument_llm_calls",
        "env_data_opt_out",
        "fail_safe",
        "log_level",
    } <= set(inspect.signature(agentops.init).parameters)
    assert list(inspect.signature(agentops.start_trace).parameters) == ["trace_name", "tags"]
    assert list(inspect.signature(agentops.end_trace).parameters) == ["trace_context", "end_state"]
    assert list(inspect.signature(TracingCore.make_span).parameters)[:5] == [
        "self",
        "operation_name",
        "span_kind",
        "version",
        "attributes",
    ]
    assert list(inspect.signature(TracingCore.finalize_span).parameters) == ["self", "span", "token"]
    assert agentops.SUCCESS is not None and agentops.ERROR is not None


def test_a_step_with_more_records_than_one_transaction_holds_settles_them_all(incident, settings, monkeypatch):
    from tests.support.context import FakeLambdaContext

    # Given a step that made 150 records and whose idempotency record waits to be marked done
    monitor = AgentOpsMonitor("manager", settings=settings)
    monitor.begin_invocation({"detail": {"metadata": {"incident_id": incident, "correlation_id": "corr-1"}}})
    for n in range(50):
        monitor.record_event("issue_detected", {"n": n})
    done = {
        "TableName": settings.idempotency_table_name,
        "Key": {"id": {"S": "step-1"}},
        "UpdateExpression": "SET #s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "COMPLETED"}},
    }
    monitor.hold({"Update": done})
    for n in range(50, 150):  # records made after it (a hook that records late) still go first
        monitor.record_event("issue_detected", {"n": n})
    client = aws.client("dynamodb")
    sent: list[list[dict[str, Any]]] = []
    real = client.transact_write_items

    def recording(**request: Any) -> Any:
        sent.append(request["TransactItems"])
        return real(**request)

    monkeypatch.setattr(client, "transact_write_items", recording)
    # When it settles
    monitor.settle(FakeLambdaContext())
    # Then every transaction stays within DynamoDB's 100 items, the records are all written,
    # and the step is marked done by the last one only (a failure before it leaves the step to redo)
    assert len(sent) == 2 and all(len(items) <= 100 for items in sent)
    assert {"Update": done} in sent[-1] and all({"Update": done} not in items for items in sent[:-1])
    events = aws.table(settings.monitoring_table_name).query(
        KeyConditionExpression=Key("pk").eq(f"INCIDENT#{incident}")
    )
    assert sum(1 for item in events["Items"] if item.get("event_type") == "issue_detected") == 150
    status = aws.table(settings.idempotency_table_name).get_item(Key={"id": "step-1"})["Item"]["status"]
    assert status == "COMPLETED"
