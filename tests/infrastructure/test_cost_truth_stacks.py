"""Template checks for issue 13: the billed-cost reconciler and its subscriptions, Claude on Bedrock."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from stacks.app_builder import build_app
from tests.support.validation import assert_validation_passed


def _statements(template: Template, role_fragment: str) -> list[dict[str, Any]]:
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if role_fragment in json.dumps(policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


@pytest.fixture(scope="module")
def bedrock(tmp_path_factory) -> dict[str, Any]:
    """`-c engineerProvider=bedrock` (the default model, through the global inference profile)."""
    outdir = tmp_path_factory.mktemp("cdk.out.bedrock")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": [], "engineerProvider": "bedrock"})
    stacks = build_app(app)
    app.synth()
    return {"outdir": outdir, "templates": {name: Template.from_stack(stack) for name, stack in stacks.items()}}


def test_each_agent_log_group_sends_its_report_lines_to_the_cost_reconciler(templates):
    monitoring = templates["monitoring"]
    filters = monitoring.find_resources("AWS::Logs::SubscriptionFilter")
    groups = sorted(f["Properties"]["LogGroupName"] for f in filters.values())
    assert groups == [f"/aws/lambda/selfheal-dev-{agent}" for agent in ("engineer", "manager", "qa")]
    for f in filters.values():
        assert f["Properties"]["FilterPattern"] == '"REPORT RequestId"'
        assert "BilledLambdaCostReconciler" in json.dumps(f["Properties"]["DestinationArn"])
    # CloudWatch Logs may invoke the reconciler, from these log groups only
    monitoring.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Principal": "logs.amazonaws.com",
            "Action": "lambda:InvokeFunction",
            "SourceArn": Match.any_value(),
        },
    )
    monitoring.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "selfheal-dev-billing",
            "Handler": "billing.handler.handler",
            "Environment": {"Variables": Match.object_like({"AGENT_LOG_GROUPS": Match.any_value()})},
        },
    )


def test_the_reconciler_may_only_touch_the_two_tables_and_read_the_price_override(templates):
    statements = _statements(templates["monitoring"], "BilledLambdaCostReconciler")
    actions = {a for s in statements for a in _actions(s)}
    assert actions <= {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
        "ssm:GetParametersByPath",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    for s in statements:
        if any(a.startswith("dynamodb:") for a in _actions(s)):
            assert "*" not in _resources(s)
    assert not any("DeleteItem" in a or "Scan" in a for a in actions)


def test_every_stack_tags_its_resources_project_selfheal(synthesized):
    for stack in synthesized["stacks"].values():
        template = Template.from_stack(stack)
        for function in template.find_resources("AWS::Lambda::Function").values():
            assert {"Key": "project", "Value": "selfheal"} in function["Properties"]["Tags"]


def test_bedrock_gives_the_engineer_invoke_model_on_its_profile_and_model_only(bedrock):
    pipeline = bedrock["templates"]["pipeline"]
    engineer = _statements(pipeline, "EngineerAgent")
    invoke = [s for s in engineer if any(a.startswith("bedrock:") for a in _actions(s))]
    assert {a for s in invoke for a in _actions(s)} == {"bedrock:InvokeModel"}  # no streaming, no wildcard action
    resources = [json.dumps(r) for s in invoke for r in _resources(s)]
    assert all(r != '"*"' for r in resources)
    assert any("inference-profile/global.anthropic.claude-sonnet-4-6" in r for r in resources)
    assert any(":bedrock:*::foundation-model/anthropic.claude-sonnet-4-6" in r for r in resources)
    # The foundation model is reachable only through this inference profile
    conditioned = [s for s in invoke if "foundation-model" in json.dumps(s["Resource"])]
    assert conditioned and all("bedrock:InferenceProfileArn" in json.dumps(s["Condition"]) for s in conditioned)
    # Nobody else may call Bedrock
    for agent in ("ManagerAgent", "QaAgent"):
        assert not any("bedrock:" in json.dumps(s["Action"]) for s in _statements(pipeline, agent))


def test_bedrock_engineer_has_no_anthropic_key_and_no_secret_read(bedrock):
    pipeline = bedrock["templates"]["pipeline"]
    for function in pipeline.find_resources("AWS::Lambda::Function").values():
        assert "ANTHROPIC_SECRET_NAME" not in function["Properties"]["Environment"]["Variables"]
    for policy in pipeline.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager:GetSecretValue" in _actions(statement):
                assert "AnthropicKey" not in json.dumps(statement["Resource"])


def test_bedrock_synth_passes_cdk_nag(bedrock):
    assert_validation_passed(bedrock["outdir"])


def test_the_anthropic_provider_still_reads_only_its_own_secret(templates):
    # Given the default (runbook, switchable to anthropic through SSM): no Bedrock permission at all
    engineer = _statements(templates["pipeline"], "EngineerAgent")
    assert not any("bedrock:" in json.dumps(s["Action"]) for s in engineer)


@pytest.mark.parametrize(
    "context, message",
    [
        ({"engineerProvider": "bedrock", "engineerModel": "gpt-5"}, "engineerModel"),
        ({"anthropicBaseUrl": "ftp://gateway"}, "anthropicBaseUrl"),
        ({"engineerProvider": "openai"}, "engineerProvider"),
    ],
)
def test_bad_provider_settings_fail_the_synth(tmp_path, context, message):
    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": [], **context})
    with pytest.raises(ValueError, match=message):
        build_app(app)


def test_a_gateway_url_becomes_an_ssm_parameter(tmp_path):
    app = cdk.App(
        outdir=str(tmp_path),
        context={"aws:cdk:bundling-stacks": [], "anthropicBaseUrl": "https://llm-gateway.example.com/anthropic"},
    )
    stacks = build_app(app)
    Template.from_stack(stacks["data"]).has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": "/selfheal/dev/anthropic-base-url", "Value": "https://llm-gateway.example.com/anthropic"},
    )
