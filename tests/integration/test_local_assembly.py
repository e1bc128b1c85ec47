"""The template reader and the pieces of EventBridge/CloudWatch behaviour the runtime adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfheal_dev.local.assembly import Assembly, synthesize
from selfheal_dev.local.metrics import parse_emf, run_queries
from selfheal_dev.local.router import normalize_event, schedule_interval, transform_input

EVENTS = Path(__file__).resolve().parents[1] / "events"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    return Assembly.load(synthesize(tmp_path_factory.mktemp("app") / "cdk.out"), endpoint="http://127.0.0.1:4566")


def test_every_intrinsic_is_resolved_with_the_names_cdk_deploy_would_create(assembly: Assembly) -> None:
    functions = {f.physical_id: f for f in assembly.of_type("AWS::Lambda::Function")}
    manager = functions["selfheal-dev-manager"]
    env = manager.properties["Environment"]["Variables"]
    assert env["EVENT_BUS_NAME"] == "agentops-dev"  # Ref inside the stack
    assert env["DECISIONS_TABLE_NAME"] == "agent-decisions-dev"  # Fn::ImportValue across stacks
    assert env["ALERTS_TOPIC_ARN"] == "arn:aws:sns:us-east-1:123456789012:selfheal-dev-alerts"
    assert env["ARTIFACTS_BUCKET"] == "selfheal-dev-artifacts-123456789012-us-east-1"  # Fn::Join with pseudo parameters
    assert manager.properties["Handler"] == "manager.handler.handler"
    assert "Fn::" not in json.dumps(manager.properties) and '"Ref"' not in json.dumps(manager.properties)


def test_function_code_and_layers_come_from_the_cloud_assembly(assembly: Assembly) -> None:
    from selfheal_dev.local.functions import function_specs

    specs = {s.name: s for s in function_specs(assembly)}
    manager = specs["selfheal-dev-manager"]
    assert (manager.code_dir / "manager" / "handler.py").exists()
    assert not (manager.code_dir / "engineer").exists(), "each function ships only its own package"
    assert any((layer / "selfheal_core" / "events.py").exists() for layer in manager.layer_dirs)
    assert manager.timeout_s == 30 and manager.memory_mb == 256


def test_rule_patterns_match_like_eventbridge(assembly: Assembly) -> None:
    from moto.events.models import EventPattern

    alarm_rule = next(r for r in assembly.of_type("AWS::Events::Rule") if "AlarmStateChange" in r.logical_id)
    pattern = EventPattern.load(json.dumps(alarm_rule.properties["EventPattern"]))
    event = json.loads((EVENTS / "alarm_state_change.json").read_text())
    assert pattern.matches_event(event)
    event["detail"]["alarmName"] = "selfheal-dev-total-cost"  # anything-but prefix
    assert not pattern.matches_event(event)
    audit = next(r for r in assembly.of_type("AWS::Events::Rule") if "Audit" in r.logical_id)
    prefix = EventPattern.load(json.dumps(audit.properties["EventPattern"]))
    assert prefix.matches_event({"source": "agentops.qa", "detail": {}})
    assert not prefix.matches_event({"source": "com.example", "detail": {}})


def test_input_transformer_renders_like_eventbridge() -> None:
    target = {
        "InputTransformer": {
            "InputPathsMap": {
                "detail-type": "$.detail-type",
                "summary": "$.detail.data.summary",
                "id": "$.detail.metadata.incident_id",
            },
            "InputTemplate": '"Selfheal <detail-type>: <summary> (incident <id>)"',
        }
    }
    event = {
        "detail-type": "IncidentEscalated",
        "detail": {"data": {"summary": 'said "no"'}, "metadata": {"incident_id": "inc-1"}},
    }
    assert transform_input(target, event) == 'Selfheal IncidentEscalated: said "no" (incident inc-1)'
    assert transform_input({"InputPath": "$.detail.data"}, event) == {"summary": 'said "no"'}
    assert transform_input({"Input": '{"a": 1}'}, event) == {"a": 1}


def test_events_are_normalized_to_the_eventbridge_shape() -> None:
    raw = {
        "version": "0",
        "id": "x",
        "detail-type": "T",
        "source": "s",
        "account": "1",
        "time": 1700000000.5,
        "region": "us-east-1",
        "resources": [],
        "detail": {},
        "ingestion-time": 1.0,
    }
    out = normalize_event(raw)
    assert out["time"] == "2023-11-14T22:13:20Z" and "ingestion-time" not in out


def test_schedules() -> None:
    assert schedule_interval("rate(5 minutes)") == 300
    assert schedule_interval("rate(1 hour)") == 3600
    # The template schedules only with rate(); a cron() rule is not fired locally.
    assert schedule_interval("cron(30 17 * * ? *)") is None


def test_emf_and_metric_math() -> None:
    class Backend:
        def __init__(self) -> None:
            self.metric_data: list = []

    from selfheal_dev.local.metrics import MetricStore

    store = MetricStore(Backend())
    doc = {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "AgentOps/Costs",
                    "Dimensions": [["environment", "agent"], ["environment"]],
                    "Metrics": [{"Name": "TotalCost", "Unit": "None"}],
                }
            ],
        },
        "environment": "dev",
        "agent": "qa",
        "TotalCost": [0.25, 0.5],
    }
    data = parse_emf(doc)
    assert len(data) == 4  # two values x two dimension sets
    store.ingest(data)
    errors = {
        "Namespace": "AgentOps/Costs",
        "MetricName": "TotalCost",
        "Dimensions": [{"Name": "environment", "Value": "dev"}],
    }
    by_agent = {**errors, "Dimensions": [*errors["Dimensions"], {"Name": "agent", "Value": "qa"}]}
    results = run_queries(
        store,
        [
            {"Id": "total", "MetricStat": {"Metric": errors, "Period": 60, "Stat": "Sum"}},
            {"Id": "qa", "MetricStat": {"Metric": by_agent, "Period": 60, "Stat": "Sum"}},
            {"Id": "share", "Expression": "qa / total * 100"},
            {"Id": "all", "Expression": "SUM(METRICS())"},
        ],
        1_699_999_000,
        1_700_001_000,
    )
    values = {r["id"]: r["values"] for r in results}
    assert values["total"] == [0.75] and values["qa"] == [0.75]  # exact dimension sets, not a superset match
    assert values["share"] == [100.0] and values["all"] == [1.5]
