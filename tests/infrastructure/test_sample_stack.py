"""The sample workload stack (context key `sampleWorkload`): what the demo heals."""

from __future__ import annotations

import json
import subprocess
import sys

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from selfheal_core import catalog as naming
from stacks.app_builder import build_app
from tests.support.validation import assert_validation_passed


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    outdir = tmp_path_factory.mktemp("cdk.sample")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": [], "sampleWorkload": "true"})
    stacks = build_app(app)
    app.synth()  # cdk-nag runs here: an unacknowledged finding fails the synth
    return {"stacks": stacks, "outdir": outdir, "template": Template.from_stack(stacks["sample"])}


def test_sample_workload_is_off_unless_asked_for(synthesized):
    # Given the default context / When the app is built / Then there is no sample stack
    assert "sample" not in synthesized["stacks"]
    assert not list(synthesized["outdir"].glob("*Sample*.template.json"))


def test_sample_function_is_small_short_and_managed(sample):
    # Given sampleWorkload=true / Then sample-orders-dev exists at 3 s / 128 MB, tagged as managed by Selfheal
    assert sample["stacks"]["sample"].stack_name == naming.sample_stack_name("dev") == "Selfheal-dev-Sample"
    template = sample["template"]
    template.resource_count_is("AWS::Lambda::Function", 1)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "sample-orders-dev",
            "Timeout": 3,
            "MemorySize": 128,
            "Handler": "handler.handler",
            "Runtime": Match.string_like_regexp("python3"),
            "Tags": Match.array_with([{"Key": "selfheal:managed", "Value": "true"}]),
        },
    )


def test_sample_alarm_is_errors_at_least_once_a_minute_and_reaches_the_manager(sample, templates):
    # Given the sample alarm / Then it is Errors >= 1 over one 60 s period on this function, missing data not breaching
    template = sample["template"]
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "sample-orders-errors-dev",
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": Match.any_value()}}],
        },
    )
    # And its name is not one of ours, so the Manager's alarm rule forwards it (anything-but our prefix)
    name = naming.sample_alarm_name("dev")
    assert not name.startswith(naming.ALARM_PREFIX)
    rule = templates["pipeline"].find_resources(
        "AWS::Events::Rule", {"Properties": {"EventPattern": {"detail-type": ["CloudWatch Alarm State Change"]}}}
    )
    pattern = json.dumps(next(iter(rule.values()))["Properties"]["EventPattern"])
    assert naming.ALARM_PREFIX in pattern


def test_sample_role_may_only_write_its_own_logs_and_traces(sample):
    # Given the sample function's role / Then it grants logs on its own group and X-Ray, nothing else
    policies = sample["template"].find_resources("AWS::IAM::Policy")
    actions = {
        a
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    sample["template"].resource_count_is("AWS::IAM::ManagedPolicy", 0)
    roles = sample["template"].find_resources("AWS::IAM::Role")
    assert all("ManagedPolicyArns" not in r["Properties"] for r in roles.values())


def test_sample_stack_passes_cdk_nag_and_cfn_lint(sample):
    assert_validation_passed(sample["outdir"])
    template = sample["outdir"] / "Selfheal-dev-Sample.template.json"
    result = subprocess.run([sys.executable, "-m", "cfnlint", str(template)], capture_output=True, text=True)
    assert result.returncode & 2 == 0, result.stdout


@pytest.mark.parametrize("value", ["maybe", "2", "on!"])
def test_sample_workload_flag_rejects_values_that_are_not_booleans(tmp_path, value):
    # Given a typo in -c sampleWorkload=... / Then the app refuses to build instead of guessing
    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": [], "sampleWorkload": value})
    with pytest.raises(ValueError, match="sampleWorkload"):
        build_app(app)
