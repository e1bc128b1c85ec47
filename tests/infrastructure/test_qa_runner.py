"""The QA runner in the template: it can do nothing but run the tests, and only QA reaches it."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.app_builder import build_app

RUNNER = "selfheal-dev-qa-runner"


def _resources(template: Any, rtype: str) -> dict[str, dict[str, Any]]:
    return template.find_resources(rtype)


def _runner(pipeline: Any) -> tuple[str, dict[str, Any]]:
    [(logical_id, function)] = [
        (k, f)
        for k, f in _resources(pipeline, "AWS::Lambda::Function").items()
        if f["Properties"]["FunctionName"] == RUNNER
    ]
    return logical_id, function


def _statements(pipeline: Any, role_logical_id: str) -> list[dict[str, Any]]:
    found = []
    for policy in _resources(pipeline, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_runner_isolates_tenants_and_sits_in_subnets_without_a_default_route(templates):
    # Given the synthesized pipeline
    pipeline = templates["pipeline"]
    _, runner = _runner(pipeline)
    props = runner["Properties"]

    # Then the runner isolates each tenant (one execution environment per run)
    assert props["TenancyConfig"] == {"TenantIsolationMode": "PER_TENANT"}
    # And its subnets' route tables have no route at all (none to 0.0.0.0/0, no IGW, NAT or endpoint)
    subnet_ids = {ref["Ref"] for ref in props["VpcConfig"]["SubnetIds"]}
    assert len(subnet_ids) == 2
    associations = _resources(pipeline, "AWS::EC2::SubnetRouteTableAssociation").values()
    tables = {
        a["Properties"]["RouteTableId"]["Ref"] for a in associations if a["Properties"]["SubnetId"]["Ref"] in subnet_ids
    }
    assert len(tables) == 2
    routes = _resources(pipeline, "AWS::EC2::Route")
    assert not [r for r in routes.values() if r["Properties"]["RouteTableId"]["Ref"] in tables]
    assert not [r for r in routes.values() if r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"]
    for rtype in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::VPCEndpoint", "AWS::EC2::EIP"):
        assert not _resources(pipeline, rtype), rtype
    # And its security group allows nothing out
    [group_ref] = props["VpcConfig"]["SecurityGroupIds"]
    group = pipeline.find_resources("AWS::EC2::SecurityGroup")[group_ref["Fn::GetAtt"][0]]
    assert not [e for e in group["Properties"].get("SecurityGroupEgress", []) if e.get("CidrIp") == "0.0.0.0/0"]


def test_runner_role_may_only_write_its_own_logs_and_manage_its_network_interfaces(templates):
    # Given the runner's role
    pipeline = templates["pipeline"]
    _, runner = _runner(pipeline)
    role_id = runner["Properties"]["Role"]["Fn::GetAtt"][0]
    role = pipeline.find_resources("AWS::IAM::Role")[role_id]

    # Then it has no managed policy and exactly two statements: its own log group, and the
    # ENI actions Lambda performs with the role to attach the function to its VPC
    assert not role["Properties"].get("ManagedPolicyArns")
    statements = _statements(pipeline, role_id)
    actions = sorted(a for s in statements for a in _actions(s))
    assert actions == sorted(
        [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSubnets",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ]
    )
    [logs] = [s for s in statements if "logs:PutLogEvents" in _actions(s)]
    assert "QaRunnerLogs" in json.dumps(logs["Resource"])
    # And its environment names nothing of the pipeline
    assert set(runner["Properties"]["Environment"]["Variables"]) == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_LOG_LEVEL",
        "SELFHEAL_ALLOW_UNISOLATED_QA",
        "PYDANTIC_DISABLE_PLUGINS",
    }
    assert runner["Properties"]["Environment"]["Variables"]["SELFHEAL_ALLOW_UNISOLATED_QA"] == "false"


def test_qa_may_invoke_only_the_runner_and_reads_no_secret(templates):
    # Given QA's role
    pipeline = templates["pipeline"]
    runner_id, _ = _runner(pipeline)
    [qa] = [
        f
        for f in _resources(pipeline, "AWS::Lambda::Function").values()
        if f["Properties"]["FunctionName"] == "selfheal-dev-qa"
    ]
    statements = _statements(pipeline, qa["Properties"]["Role"]["Fn::GetAtt"][0])

    # Then its only lambda permission is InvokeFunction on the runner
    lambda_statements = [s for s in statements if any(a.startswith("lambda:") for a in _actions(s))]
    assert lambda_statements == [
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": {"Fn::GetAtt": [runner_id, "Arn"]}}
    ]
    # And it reads no secret (and is not told of one); it knows the runner by name
    assert not [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    variables = qa["Properties"]["Environment"]["Variables"]
    assert "SECRET_NAME" not in variables
    assert variables["QA_RUNNER_FUNCTION_NAME"] == {"Ref": runner_id}
    # And no other agent may invoke any function
    for name in ("selfheal-dev-manager", "selfheal-dev-engineer"):
        [other] = [
            f for f in _resources(pipeline, "AWS::Lambda::Function").values() if f["Properties"]["FunctionName"] == name
        ]
        other_statements = _statements(pipeline, other["Properties"]["Role"]["Fn::GetAtt"][0])
        assert not [s for s in other_statements if "lambda:InvokeFunction" in _actions(s)]


def _synth(tmp_path, **context: Any) -> dict[str, Any]:
    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": [], **context})
    stacks = build_app(app)
    return {name: cdk.assertions.Template.from_stack(stack) for name, stack in stacks.items()}


def test_allow_unisolated_qa_is_refused_for_any_deploy(tmp_path):
    # Given the opt-in on an app that is not the local runtime's synth
    # When it synthesizes
    # Then it is refused, naming the key
    with pytest.raises(ValueError, match="allowUnisolatedQa"):
        _synth(tmp_path, allowUnisolatedQa="true")


def test_allow_unisolated_qa_reaches_the_runner_only_in_a_local_synth(tmp_path):
    # Given the opt-in with the marker that only selfheal_dev/local/synth.py sets
    templates = _synth(tmp_path, allowUnisolatedQa="true", **{"selfheal:localSynth": True})

    # Then the runner (and only the runner) is told
    _, runner = _runner(templates["pipeline"])
    assert runner["Properties"]["Environment"]["Variables"]["SELFHEAL_ALLOW_UNISOLATED_QA"] == "true"


def test_an_existing_vpc_named_by_context_replaces_the_created_one(tmp_path):
    # Given an existing VPC and its subnets
    templates = _synth(
        tmp_path,
        qaRunnerVpcId="vpc-0123456789abcdef0",
        qaRunnerSubnetIds="subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    )

    # Then no VPC is created and the runner uses those subnets
    pipeline = templates["pipeline"]
    assert not _resources(pipeline, "AWS::EC2::VPC")
    _, runner = _runner(pipeline)
    assert runner["Properties"]["VpcConfig"]["SubnetIds"] == ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]


def test_a_vpc_without_subnets_is_refused(tmp_path):
    with pytest.raises(ValueError, match="qaRunnerSubnetIds"):
        _synth(tmp_path, qaRunnerVpcId="vpc-0123456789abcdef0")
