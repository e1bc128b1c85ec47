"""The heal loop's permissions: reads broad enough to investigate, writes only on managed functions."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.data_stack import DataStack
from stacks.settings import DeploySettings

WRITES = {"lambda:UpdateFunctionConfiguration", "lambda:PutFunctionConcurrency", "lambda:PutFunctionEventInvokeConfig"}


def _statements(template: Template) -> list[tuple[str, dict]]:
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            found.append((roles, statement))
    return found


def _actions(statement: dict) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_only_the_manager_changes_functions_and_only_those_tagged_managed(templates):
    # Given the synthesized pipeline stack
    statements = _statements(templates["pipeline"])

    # When we collect every statement that grants a Lambda configuration write
    writers = [(roles, s) for roles, s in statements if _actions(s) & WRITES and s["Effect"] == "Allow"]

    # Then exactly one statement grants them, to the Manager, conditioned on the managed tag
    assert len(writers) == 1
    roles, statement = writers[0]
    assert "ManagerAgent" in roles
    assert _actions(statement) == WRITES
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceTag/selfheal:managed": "true"}}
    assert statement["Effect"] == "Allow"


def test_investigation_reads_are_read_only_and_scoped_to_functions_and_their_log_groups(templates):
    statements = [s for roles, s in _statements(templates["pipeline"]) if "ManagerAgent" in roles]
    reads = next(s for s in statements if "lambda:GetFunctionConfiguration" in _actions(s))
    assert _actions(reads) == {
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:GetFunctionConcurrency",
        "lambda:GetFunctionEventInvokeConfig",
        "lambda:ListTags",
    }
    assert ":function:*" in json.dumps(reads["Resource"])
    logs = next(s for s in statements if "logs:FilterLogEvents" in _actions(s))
    assert "log-group:/aws/lambda/*" in json.dumps(logs["Resource"])
    # No other role may read other functions' logs or change schedules.
    for roles, statement in _statements(templates["pipeline"]):
        if _actions(statement) & {"logs:FilterLogEvents", "scheduler:CreateSchedule", "iam:PassRole"}:
            assert "ManagerAgent" in roles


def test_scheduler_role_may_only_put_apply_and_verify_due_as_the_manager(templates):
    pipeline = templates["pipeline"]
    pipeline.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRole",
                        "Effect": "Allow",
                        "Principal": {"Service": "scheduler.amazonaws.com"},
                        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
                    }
                ]
            },
        },
    )
    scheduler = [s for roles, s in _statements(pipeline) if "HealSchedulerRole" in roles]
    assert len(scheduler) == 1
    assert scheduler[0]["Action"] == "events:PutEvents"
    assert scheduler[0]["Condition"]["StringEquals"] == {
        "events:source": "agentops.manager",
        "events:detail-type": ["ApplyDue", "VerifyDue"],
    }
    pass_role = [s for roles, s in _statements(pipeline) if "iam:PassRole" in _actions(s)]
    assert len(pass_role) == 1
    assert pass_role[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    assert "HealSchedulerRole" in json.dumps(pass_role[0]["Resource"])


def test_schedules_route_to_the_manager_and_rollbacks_notify_people(templates):
    pipeline = templates["pipeline"]
    pipeline.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {"detail-type": ["ApplyDue", "VerifyDue"], "source": ["agentops.manager"]},
        },
    )
    pipeline.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "detail-type": ["ApprovalRequested", "IncidentEscalated", "FixRolledBack"],
                "source": ["agentops.manager", "agentops.engineer"],
            },
        },
    )


@pytest.mark.parametrize("context, expected", [({}, "900"), ({"verifyWindowSeconds": "60"}, "60")])
def test_verify_window_is_a_context_key_kept_in_ssm(context, expected):
    app = cdk.App(context={"aws:cdk:bundling-stacks": [], **context})
    stack = DataStack(app, "Data", settings=DeploySettings.from_context(app.node))
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/selfheal/dev/verify-window-seconds", "Value": expected}
    )
    template.has_resource_properties(
        "AWS::SSM::Parameter", {"Name": "/selfheal/dev/apply-windows", "Value": '{"*": "any"}'}
    )


def test_a_verify_window_out_of_range_is_refused():
    app = cdk.App(context={"verifyWindowSeconds": "5"})
    with pytest.raises(ValueError, match="verifyWindowSeconds"):
        DeploySettings.from_context(app.node)


@pytest.mark.parametrize("budget", ["inf", "1e400", "nan", "-1", "10001"])
def test_a_daily_llm_budget_that_is_not_finite_or_out_of_range_is_refused(budget):
    # It would reach the SSM parameter, which every agent then refuses to read.
    app = cdk.App(context={"dailyLlmBudgetUsd": budget})
    with pytest.raises(ValueError, match="dailyLlmBudgetUsd must be between 0 and 10000"):
        DeploySettings.from_context(app.node)


@pytest.mark.parametrize("threshold", ["inf", "nan", "0", "-3"])
def test_a_cost_alert_threshold_that_is_not_a_finite_positive_number_is_refused(threshold):
    # An alarm on NaN or inf never fires: the cost alert would be silently off.
    app = cdk.App(context={"costAlertThreshold": threshold})
    with pytest.raises(ValueError, match="costAlertThreshold must be a finite number > 0"):
        DeploySettings.from_context(app.node)


def test_the_bus_policy_lets_the_scheduler_role_send_as_the_manager_and_nobody_else(templates):
    # Given the bus resource policy that pins each agent source to its role
    policies = templates["pipeline"].find_resources("AWS::Events::EventBusPolicy")
    [manager] = [
        p["Properties"]["Statement"]
        for p in policies.values()
        if p["Properties"]["Statement"]["Condition"].get("StringEquals", {}).get("events:source") == "agentops.manager"
    ]

    # Then the deny spares exactly the Manager's role and the scheduler role (ApplyDue / VerifyDue)
    assert manager["Effect"] == "Deny"
    spared = manager["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    roles = [arn["Fn::GetAtt"][0] for arn in spared]
    assert len(roles) == 2
    assert roles[0].startswith("ManagerAgentRole") and roles[1].startswith("HealSchedulerRole")


def test_the_manager_may_never_change_selfheals_own_functions_whatever_their_tags(templates):
    # Given the Manager's statements
    statements = [s for roles, s in _statements(templates["pipeline"]) if "ManagerAgent" in roles]

    # Then an explicit Deny covers every configuration write on any selfheal-* function
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert _actions(deny) == WRITES
    assert ":function:selfheal-*" in json.dumps(deny["Resource"])
