"""Every metric a dashboard or an alarm reads is one the code really emits.

The MonitoringStack is synthesized over a small helper stack (real tables, functions, bus,
rules, queues, topic). Its DashboardBody JSON and alarm definitions give the referenced
(namespace, metric, dimension names); driving the monitor API, the budget guard and the
analyzer under moto gives the EMF actually printed. Our namespaces must match exactly,
dimension values included where a widget pins them (agent "qa", flow "qa->engineer"...);
AWS/* metrics must point at our own resources.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from moto import mock_aws

from selfheal_core.config import get_settings

TOKEN = "__TOKEN__"
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s+MetricName=\"([^\"]+)\"")
AWS_METRICS = {
    ("AWS/Lambda", frozenset({"FunctionName"})),
    ("AWS/SQS", frozenset({"QueueName"})),
    ("AWS/Events", frozenset({"RuleName"})),
    ("AWS/Events", frozenset({"EventBusName", "RuleName"})),
}


# ---------------------------------------------------------------------- synthesis
def _helper_stack(app: cdk.App, layer_dir: Path) -> dict[str, Any]:
    from stacks import constants

    stack = cdk.Stack(app, "Helper")

    def table(construct_id: str) -> dynamodb.TableV2:
        key = dynamodb.Attribute
        return dynamodb.TableV2(
            stack,
            construct_id,
            partition_key=key(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=key(name="sk", type=dynamodb.AttributeType.STRING),
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=i,
                    partition_key=key(name=f"{i}pk", type=dynamodb.AttributeType.STRING),
                    sort_key=key(name=f"{i}sk", type=dynamodb.AttributeType.STRING),
                )
                for i in ("gsi1", "gsi2")
            ],
        )

    functions = {
        agent: lambda_.Function(
            stack,
            agent,
            runtime=constants.RUNTIME,
            handler="index.handler",
            code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
        )
        for agent in ("manager", "engineer", "qa", "qa-runner", "approvals")
    }
    bus = events.EventBus(stack, "Bus", event_bus_name="agentops-test")
    queues = [sqs.Queue(stack, f"Dlq{n}") for n in range(2)]
    rules = [
        events.Rule(
            stack,
            "OnBus",
            event_bus=bus,
            event_pattern=events.EventPattern(detail_type=["FixProposed"]),
            targets=[targets.LambdaFunction(functions["qa"], dead_letter_queue=queues[0])],
        ),
        events.Rule(
            stack,
            "Scan",
            schedule=events.Schedule.rate(cdk.Duration.minutes(5)),
            targets=[targets.LambdaFunction(functions["manager"], dead_letter_queue=queues[1])],
        ),
    ]
    return {
        "functions": {agent: functions[agent] for agent in ("manager", "engineer", "qa")},
        "helper_functions": {helper: functions[helper] for helper in ("qa-runner", "approvals")},
        "dead_letter_queues": queues,
        "event_bus": bus,
        "rules": rules,
        "alerts_topic": sns.Topic(stack, "Alerts"),
        "layer": lambda_.LayerVersion(
            stack, "Layer", code=lambda_.Code.from_asset(str(layer_dir)), compatible_runtimes=[constants.RUNTIME]
        ),
        "decisions_table": table("Decisions"),
        "monitoring_table": table("Monitoring"),
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict[str, Any]:
    from stacks.monitoring_stack import MonitoringStack

    layer_dir = tmp_path_factory.mktemp("layer")
    (layer_dir / "python").mkdir()
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")), context={"aws:cdk:bundling-stacks": []})
    resources = _helper_stack(app, layer_dir)
    stack = MonitoringStack(
        app,
        "Monitoring",
        env_name=get_settings().environment,
        cost_alert_threshold=10.0,
        analyzer_environment={"ENVIRONMENT": get_settings().environment},
        **resources,
    )
    return cdk.assertions.Template.from_stack(stack).to_json()


# ---------------------------------------------------------------------- what the stack references
def _render(value: Any) -> str:
    """DashboardBody is an Fn::Join of strings and tokens; tokens become a placeholder."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(p if isinstance(p, str) else TOKEN for p in parts)
    return TOKEN


def _value(value: Any) -> str:
    return value if isinstance(value, str) else TOKEN


def _from_expression(expression: str, where: str) -> list[dict[str, Any]]:
    found = []
    for schema, name in SEARCH.findall(expression):
        namespace, *dimensions = [part.strip() for part in schema.split(",")]
        found.append({"namespace": namespace, "name": name, "dimensions": dict.fromkeys(dimensions), "where": where})
    return found


def dashboard_references(template: dict[str, Any]) -> list[dict[str, Any]]:
    refs = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Dashboard":
            continue
        body = json.loads(_render(resource["Properties"]["DashboardBody"]))
        for widget in body["widgets"]:
            for row in widget.get("properties", {}).get("metrics", []):
                where = f"{logical_id}: {widget['properties'].get('title')}"
                options = row[-1] if isinstance(row[-1], dict) else {}
                if "expression" in options:
                    refs.extend(_from_expression(options["expression"], where))
                    continue
                fields = row[:-1] if options else row
                assert "." not in fields[:2], f"shorthand rows are not parsed: {row}"
                namespace, name, *pairs = fields
                refs.append(
                    {
                        "namespace": namespace,
                        "name": name,
                        "where": where,
                        "dimensions": dict(zip(pairs[::2], pairs[1::2], strict=True)),
                    }
                )
    return refs


def alarm_references(template: dict[str, Any]) -> list[dict[str, Any]]:
    refs = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        where = props["AlarmName"]
        if "MetricName" in props:
            refs.append(
                {
                    "namespace": props["Namespace"],
                    "name": props["MetricName"],
                    "where": where,
                    "dimensions": {d["Name"]: _value(d["Value"]) for d in props.get("Dimensions", [])},
                }
            )
        for query in props.get("Metrics", []):
            if "Expression" in query:
                refs.extend(_from_expression(query["Expression"], where))
            if "MetricStat" in query:
                m = query["MetricStat"]["Metric"]
                refs.append(
                    {
                        "namespace": m["Namespace"],
                        "name": m["MetricName"],
                        "where": where,
                        "dimensions": {d["Name"]: _value(d["Value"]) for d in m.get("Dimensions", [])},
                    }
                )
    return refs


# ---------------------------------------------------------------------- what the code emits
@pytest.fixture(scope="module")
def emitted() -> list[dict[str, Any]]:
    """EMF documents printed by a realistic run of every metric-producing API."""
    import contextlib
    import io

    from agentops_monitoring import AgentEventType, AgentOpsMonitor, BudgetGuard
    from agentops_monitoring.analyzer import AgentOpsAnalyzer
    from agentops_monitoring.emf import MetricSink
    from lambdas.analyzer.logic import run_hourly
    from selfheal_core import aws
    from tests.support.context import FakeLambdaContext
    from tests.support.tables import create_tables

    settings = get_settings()
    out = io.StringIO()
    with mock_aws(), contextlib.redirect_stdout(out):
        aws.reset_clients()
        create_tables(settings.decisions_table_name, settings.monitoring_table_name, settings.idempotency_table_name)
        manager, engineer, qa = (AgentOpsMonitor(a, settings=settings) for a in ("manager", "engineer", "qa"))
        manager.record_event(AgentEventType.ISSUE_DETECTED, {})
        manager.record_event(AgentEventType.EVENT_REJECTED, {"reason": "bad input"})
        manager.record_decision("triage", [], {}, {}, 0.9)
        manager.record_collaboration("manager", "engineer", "RemediationRequested")
        manager.record_status("REMEDIATING")
        engineer.track_llm_usage("claude-sonnet-4-5", 1_000, 100, 50, 20)
        engineer.track_llm_usage("some-future-model", 1_000, 100)
        engineer.record_event(AgentEventType.CODE_GENERATED, {})
        engineer.record_collaboration("engineer", "qa", "FixProposed")
        qa.record_event(AgentEventType.TEST_FAILED, {})
        qa.record_collaboration("qa", "engineer", "FixRejected")
        qa.record_event(AgentEventType.TEST_PASSED, {})
        qa.record_collaboration("qa", "manager", "FixValidated")
        manager.record_status("RESOLVED", incident_cost_usd=0.05)
        guard = BudgetGuard(settings.monitoring_table_name, 1.0, environment=settings.environment, sink=engineer.sink)
        guard.reserve(0.5, model="claude-sonnet-4-5")
        guard.reserve(5.0, model="claude-sonnet-4-5")
        contexts = {monitor.agent: FakeLambdaContext(memory_limit_in_mb=256) for monitor in (manager, engineer, qa)}
        for monitor in (manager, engineer, qa):
            monitor.track_lambda_execution(contexts[monitor.agent], 0.2)
            monitor.flush()
        # The cost reconciler replaces the engineer's estimate with the billed figure from its REPORT line
        from agentops_monitoring.billing import BilledCostReconciler, parse_report
        from agentops_monitoring.costs import load_price_table

        reconciler = BilledCostReconciler(
            environment=settings.environment,
            monitoring_table=settings.monitoring_table_name,
            decisions_table=settings.decisions_table_name,
            prices=load_price_table,
            agents_by_log_group={"/aws/lambda/engineer": "engineer"},
            sink=engineer.sink,
        )
        line = (
            f"REPORT RequestId: {contexts['engineer'].aws_request_id}\tDuration: 200.50 ms\t"
            "Billed Duration: 1101 ms\tMemory Size: 256 MB\tMax Memory Used: 90 MB\tInit Duration: 900.12 ms\t"
        )
        reconciler.reconcile(parse_report(line), "engineer")
        engineer.flush()
        run_hourly(AgentOpsAnalyzer(settings), MetricSink(), settings.environment)
        aws.reset_clients()
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{") and '"_aws"' in line]


def emitted_series(docs: list[dict[str, Any]]) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric, frozenset of (dimension, value)) for every dimension set of every document."""
    series = set()
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                for m in directive["Metrics"]:
                    series.add((directive["Namespace"], m["Name"], frozenset((d, doc[d]) for d in dimension_set)))
    return series


# ---------------------------------------------------------------------- the checks
def test_the_stack_has_three_dashboards_with_the_documented_names(template):
    names = sorted(
        r["Properties"]["DashboardName"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Dashboard"
    )
    env = get_settings().environment
    assert names == sorted(
        f"{base}-{env}"
        for base in ("AgentOps-Monitoring", "AgentOps-Monitoring-Cost", "AgentOps-Monitoring-Collaboration")
    )


def test_every_dashboard_and_alarm_metric_of_ours_is_emitted_with_the_same_name_and_dimensions(template, emitted):
    series = emitted_series(emitted)
    by_names = {(ns, name, frozenset(d for d, _ in dims)) for ns, name, dims in series}
    refs = dashboard_references(template) + alarm_references(template)
    ours = [r for r in refs if not r["namespace"].startswith("AWS/")]
    assert len(ours) > 30
    missing = [r for r in ours if (r["namespace"], r["name"], frozenset(r["dimensions"])) not in by_names]
    assert missing == [], "referenced but never emitted (namespace, name, dimension names)"
    pinned = [r for r in ours if all(isinstance(v, str) for v in r["dimensions"].values())]
    wrong_values = [r for r in pinned if (r["namespace"], r["name"], frozenset(r["dimensions"].items())) not in series]
    assert wrong_values == [], "dimension values pinned by a widget/alarm that the code never emits"


def test_our_namespaces_are_the_documented_ones(template):
    refs = dashboard_references(template) + alarm_references(template)
    namespaces = {r["namespace"] for r in refs}
    assert {"AgentOps/Events", "AgentOps/Costs", "AgentOps/Collaboration"} <= namespaces
    assert all(
        ns.startswith(("AgentOps/Events", "AgentOps/Costs", "AgentOps/Collaboration", "AgentOps/Anomalies/", "AWS/"))
        for ns in namespaces
    )


def test_aws_metrics_only_watch_our_own_resources(template):
    refs = [r for r in dashboard_references(template) + alarm_references(template) if r["namespace"].startswith("AWS/")]
    assert {r["namespace"] for r in refs} == {"AWS/Lambda", "AWS/SQS", "AWS/Events"}
    for ref in refs:
        assert (ref["namespace"], frozenset(ref["dimensions"])) in AWS_METRICS, ref
        assert any(TOKEN in value for value in ref["dimensions"].values() if value), ref


def test_no_dimension_is_an_incident_id_or_powertools_service(emitted):
    for doc in emitted:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                assert set(dimension_set) <= {
                    "agent",
                    "environment",
                    "flow",
                    "model",
                    "status",
                    "message_type",
                    "token_type",
                    "outcome",
                }, dimension_set


def test_every_alarm_notifies_the_alerts_topic_and_carries_the_ignored_prefix(template):
    alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert {a["AlarmName"].split("-", 2)[2] for a in alarms} >= {
        "total-cost",
        "test-failures",
        "success-rate",
        "collaboration-anomalies",
        "manager-errors",
        "analyzer-errors",
        "qa-runner-errors",
        "approvals-errors",
    }
    for alarm in alarms:
        assert alarm["AlarmName"].startswith("selfheal-")
        assert len(alarm["AlarmActions"]) == 1 and "Fn::ImportValue" in json.dumps(alarm["AlarmActions"])
    [cost] = [a for a in alarms if a["AlarmName"].endswith("total-cost")]
    assert (cost["Threshold"], cost["Period"], cost["Statistic"]) == (10.0, 86400, "Sum")
    [failures] = [a for a in alarms if a["AlarmName"].endswith("test-failures")]
    assert (failures["Threshold"], failures["Period"], failures["ComparisonOperator"]) == (
        5,
        300,
        "GreaterThanThreshold",
    )
    [rate] = [a for a in alarms if a["AlarmName"].endswith("success-rate")]
    assert rate["Threshold"] == 80 and rate["ComparisonOperator"] == "LessThanThreshold"
    assert any("Expression" in q for q in rate["Metrics"])


def test_the_analyzer_is_read_only_on_the_two_tables_and_runs_hourly_with_retries_and_a_dlq(template):
    resources = template["Resources"].values()
    # (the stack's other function is the billed-cost reconciler, see test_cost_truth_stacks.py)
    [function] = [
        r["Properties"]
        for r in resources
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"].startswith("analyzer.")
    ]
    assert function["Handler"] == "analyzer.handler.handler" and function["Architectures"] == ["x86_64"]
    [rule] = [r["Properties"] for r in resources if r["Type"] == "AWS::Events::Rule"]
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    assert (
        rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 4
        and "Arn" in rule["Targets"][0]["DeadLetterConfig"]
    )
    actions = {
        a
        for r in resources
        if r["Type"] == "AWS::IAM::Policy" and "Analyzer" in json.dumps(r["Properties"]["Roles"])
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:Query", "dynamodb:BatchGetItem"}
    assert actions <= {
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }  # on-failure destination
    [log_group] = [
        r["Properties"]
        for r in resources
        if r["Type"] == "AWS::Logs::LogGroup" and r["Properties"]["LogGroupName"].endswith("-analyzer")
    ]
    assert log_group["RetentionInDays"] == 30


def test_dashboard_urls_are_stack_outputs(template):
    outputs = template["Outputs"]
    for key in ("MonitoringDashboardUrl", "CostDashboardUrl", "CollaborationDashboardUrl"):
        assert "#dashboards/dashboard/" in json.dumps(outputs[key]["Value"])
