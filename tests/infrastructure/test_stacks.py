"""Template assertions on counts and the properties a platform team relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from selfheal_core.catalog import AGENT_ROUTES
from tests.support.validation import assert_validation_passed


def test_tables_are_on_demand_with_pitr_ttl_and_two_gsis(templates):
    data = templates["data"]
    data.resource_count_is("AWS::DynamoDB::GlobalTable", 4)
    for name in ("agent-decisions-dev", "agent-monitoring-dev"):
        data.has_resource_properties(
            "AWS::DynamoDB::GlobalTable",
            {
                "TableName": name,
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
                "Replicas": [
                    Match.object_like({"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})
                ],
                "GlobalSecondaryIndexes": [
                    Match.object_like({"IndexName": "gsi1"}),
                    Match.object_like({"IndexName": "gsi2"}),
                ],
            },
        )
    data.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "TableName": "agent-validations-dev",
            "BillingMode": "PAY_PER_REQUEST",
            "Replicas": [Match.object_like({"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})],
            "GlobalSecondaryIndexes": Match.absent(),
        },
    )
    data.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "TableName": "selfheal-idempotency-dev",
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        },
    )


def test_alerts_topic_has_the_email_subscription_and_secret_and_parameters_exist(templates):
    data = templates["data"]
    data.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    data.resource_count_is("AWS::SecretsManager::Secret", 2)  # AgentOps (all agents), Anthropic (Engineer)
    data.has_resource_properties("AWS::SSM::Parameter", {"Name": "/selfheal/dev/daily-llm-budget-usd"})
    data.has_resource_properties("AWS::SSM::Parameter", {"Name": "/selfheal/dev/automation-level"})


def _shipped(layer_dir) -> set[str]:
    """The distributions a layer installs, from the asset the template points at (bundling skipped)."""
    lines = (
        ((layer_dir.parent if layer_dir.name == "python" else layer_dir) / "requirements.txt").read_text().splitlines()
    )
    return {line.split("==")[0].split("[")[0].strip() for line in lines if line.strip() and not line.startswith("#")}


def test_each_function_carries_the_core_layer_and_only_the_extra_layers_it_runs(synthesized):
    # Resolved the way the local runtime mounts them: every layer of the function, in order.
    from selfheal_dev.local.assembly import Assembly
    from selfheal_dev.local.functions import function_specs

    specs = {s.handler.split(".")[0]: s for s in function_specs(Assembly.load(synthesized["outdir"]))}
    shipped = {package: set().union(*(_shipped(d) for d in spec.layer_dirs)) for package, spec in specs.items()}
    core = {"aws-lambda-powertools", "pydantic"}
    assert {spec.layer_dirs[0] for spec in specs.values()} == {specs["manager"].layer_dirs[0]}  # the core layer, first
    assert shipped["manager"] == shipped["qa"] == shipped["approvals"] == shipped["analyzer"] == core
    assert shipped["engineer"] == core | {"anthropic", "agentops"}
    assert shipped["qa_runner"] == core | {"pytest"}


def test_each_code_asset_holds_only_its_own_agent(synthesized):
    import aws_cdk as cdk

    from selfheal_dev.local.assembly import Assembly
    from selfheal_dev.local.functions import function_specs
    from stacks.constructs.agent_function import AgentCodeBundling

    # Bundling is skipped in tests (the asset is then lambdas/ itself); what ships is the bundle:
    # the function's package alone, with its bytecode.
    for spec in function_specs(Assembly.load(synthesized["outdir"])):
        package = spec.handler.split(".")[0]
        if spec.code_dir.name != "lambdas":
            continue  # inline code (custom resources)
        out = synthesized["outdir"] / f"bundle-probe-{package}"
        out.mkdir()
        assert AgentCodeBundling(package).try_bundle(str(out), image=cdk.DockerImage.from_registry("unused"))
        assert sorted(p.name for p in out.iterdir()) == [package], spec.name
        assert list((out / package / "__pycache__").glob("handler.*.pyc")), spec.name


def test_three_agents_have_each_their_own_role_log_group_and_failure_queue(templates):
    pipeline = templates["pipeline"]
    functions = pipeline.find_resources("AWS::Lambda::Function")
    assert len(functions) == 5  # 3 agents + the QA runner + approvals
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}
    assert len(roles) == 5
    pipeline.resource_count_is("AWS::Logs::LogGroup", 6)  # 3 agents + QA runner + approvals + audit log
    pipeline.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    pipeline.resource_count_is("AWS::Lambda::EventInvokeConfig", 4)  # not the runner: invoked synchronously only
    pipeline.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )


def test_every_rule_target_has_retry_policy_and_dead_letter_queue(templates):
    rules = templates["pipeline"].find_resources("AWS::Events::Rule")
    assert len(rules) == len(AGENT_ROUTES) + 5  # + unrouted, alarm forwarding, notify, audit, scan
    for logical_id, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4, logical_id
            assert "Arn" in target["DeadLetterConfig"], logical_id


def test_alarm_forwarding_rule_is_on_the_default_bus_and_skips_our_own_alarms(templates):
    templates["pipeline"].has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                # Only this account's and Region's alarms: a default bus may receive an organisation's.
                "account": [{"Ref": "AWS::AccountId"}],
                "region": [{"Ref": "AWS::Region"}],
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {"alarmName": [{"anything-but": {"prefix": "selfheal-"}}]},
            },
            "EventBusName": "default",
        },
    )


def test_each_agent_may_only_publish_under_its_own_source(templates):
    policies = templates["pipeline"].find_resources("AWS::IAM::Policy")
    sources = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Action") == "events:PutEvents":
                sources.add(statement["Condition"]["StringEquals"]["events:source"])
    assert sources == {"agentops.manager", "agentops.engineer", "agentops.qa", "agentops.operator"}


def test_no_secret_values_in_function_environment(templates):
    for function in templates["pipeline"].find_resources("AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert not any("KEY" in name for name in variables)
        # QA, its runner and the approvals function read no secret, so they are not even told where one is.
        has_secret = function["Properties"]["FunctionName"] not in (
            "selfheal-dev-qa",
            "selfheal-dev-qa-runner",
            "selfheal-dev-approvals",
        )
        assert ("SECRET_NAME" in variables) == has_secret


def test_only_the_engineer_can_read_the_anthropic_key(templates):
    pipeline = templates["pipeline"]
    functions = pipeline.find_resources("AWS::Lambda::Function")
    with_anthropic = [
        f["Properties"]["FunctionName"]
        for f in functions.values()
        if "ANTHROPIC_SECRET_NAME" in f["Properties"]["Environment"]["Variables"]
    ]
    assert with_anthropic == ["selfheal-dev-engineer"]
    readers = 0
    for policy in pipeline.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager:GetSecretValue" in statement["Action"] and "AnthropicKey" in json.dumps(
                statement["Resource"]
            ):
                readers += 1
                assert "Engineer" in json.dumps(policy["Properties"]["Roles"])
    assert readers == 1


def test_the_validation_report_is_written_and_every_plugin_concludes_success(synthesized):
    assert_validation_passed(synthesized["outdir"])


def test_cdk_nag_runs_on_every_synth_and_fails_on_a_finding(tmp_path):
    """Proves the packs are wired in: an unacknowledged finding makes synth fail."""
    import aws_cdk as cdk
    import pytest
    from aws_cdk import aws_sqs as sqs

    from stacks.app_builder import build_app

    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stacks = build_app(app)
    sqs.Queue(stacks["data"], "QueueWithoutSsl")
    with pytest.raises(RuntimeError, match="AwsSolutions-SQS4"):
        app.synth()


def test_cfn_lint_finds_no_errors(synthesized):
    templates = sorted(str(p) for p in synthesized["outdir"].glob("*.template.json"))
    result = subprocess.run([sys.executable, "-m", "cfnlint", *templates], capture_output=True, text=True)
    # Exit code is a bitmask: 2 = errors; warnings (4) and informational (8) do not fail.
    assert result.returncode & 2 == 0, result.stdout


def test_resources_carry_the_names_the_cli_and_local_runtime_expect(synthesized, templates):
    """selfheal_core/catalog.py is the one naming convention; the templates must really use it."""
    from selfheal_core import catalog as naming

    assert {s.stack_name for s in synthesized["stacks"].values()} == set(naming.stack_names("dev").values())
    pipeline, data = templates["pipeline"], templates["data"]
    pipeline.has_resource_properties("AWS::Events::EventBus", {"Name": naming.bus_name("dev")})
    for agent in naming.AGENTS:
        pipeline.has_resource_properties("AWS::Lambda::Function", {"FunctionName": naming.function_name("dev", agent)})
    data.has_resource_properties("AWS::SNS::Topic", {"TopicName": naming.alerts_topic_name("dev")})
    for table in (
        naming.decisions_table_name("dev"),
        naming.monitoring_table_name("dev"),
        naming.idempotency_table_name("dev"),
    ):
        data.has_resource_properties("AWS::DynamoDB::GlobalTable", {"TableName": table})
    data.has_resource_properties("AWS::SSM::Parameter", {"Name": naming.parameter_prefix("dev") + "automation-level"})


def test_the_agents_bus_is_archived_and_replays_page_nobody(templates):
    pipeline = templates["pipeline"]
    pipeline.has_resource_properties(
        "AWS::Events::Archive",
        {
            "ArchiveName": "selfheal-dev-agents",
            "RetentionDays": 30,
            "SourceArn": {"Fn::GetAtt": [Match.string_like_regexp("AgentsBus"), "Arn"]},
        },
    )
    pipeline.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like(
                {
                    "detail-type": ["ApprovalRequested", "IncidentEscalated", "FixRolledBack"],
                    "replay-name": [{"exists": False}],
                }
            ),
        },
    )


def test_a_misspelt_context_key_fails_the_synth_naming_the_known_keys():
    import aws_cdk as cdk
    import pytest

    from stacks.app_builder import build_app

    app = cdk.App(context={"aws:cdk:bundling-stacks": [], "engineerProvidr": "anthropic"})
    with pytest.raises(ValueError, match=r"unknown context key\(s\) engineerProvidr; known keys: .*engineerProvider"):
        build_app(app)


def test_cdk_feature_flags_and_cdk_keys_pass_the_context_check():
    import aws_cdk as cdk

    from stacks.settings import DeploySettings

    flags = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    app = cdk.App(
        context={
            **flags,
            "aws:cdk:bundling-stacks": [],
            "engineerProvider": "anthropic",
            "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a"],
        }
    )
    assert DeploySettings.from_context(app.node).engineer_provider == "anthropic"


def test_the_test_fixtures_read_every_agent_route_and_table_from_the_template():
    from selfheal_core import catalog
    from tests.support.template import lambda_routes, table_definitions

    routes = lambda_routes()
    [unrouted] = [r for r in routes if catalog.UNROUTED_RULE_ID in r.rule]
    assert unrouted.agent == "manager" and not unrouted.on_default_bus
    on_bus = {(tuple(r.pattern["detail-type"]), r.agent) for r in routes if not r.on_default_bus and r is not unrouted}
    assert on_bus == {(route.detail_types, route.agent) for route in catalog.AGENT_ROUTES}
    [alarms] = [r for r in routes if r.on_default_bus]
    assert alarms.agent == "manager" and alarms.pattern["source"] == ["aws.cloudwatch"]
    tables = table_definitions()
    assert set(tables) == {
        catalog.decisions_table_name("dev"),
        catalog.monitoring_table_name("dev"),
        catalog.idempotency_table_name("dev"),
        catalog.validations_table_name("dev"),
    }
    assert [i["IndexName"] for i in tables[catalog.decisions_table_name("dev")]["GlobalSecondaryIndexes"]] == [
        "gsi1",
        "gsi2",
    ]


def _agents_bus_rules_to(templates, function_prefix: str) -> dict[str, dict]:
    """The enabled rules on the agents bus with a target whose ARN points at that function."""
    rules = templates["pipeline"].find_resources("AWS::Events::Rule")
    found = {}
    for logical_id, rule in rules.items():
        props = rule["Properties"]
        if "EventPattern" not in props or props.get("EventBusName") == "default":
            continue
        if any(function_prefix in json.dumps(t["Arn"]) for t in props["Targets"]):
            found[logical_id] = props["EventPattern"]
    return found


@pytest.mark.parametrize(
    ("source", "detail_type", "rule"),
    [
        # A producer's report: its own route only, never a second delivery through Unrouted.
        ("acme.checkout", "IssueReported", "IssueReported"),
        ("selfheal.cli", "IssueReported", "IssueReported"),
        # A producer's event no route takes: to the Manager, to be refused with the reason.
        ("acme.checkout", "issueReported", "Unrouted"),
        ("acme.checkout", "Issue Reported", "Unrouted"),
        ("acme.checkout", "FixValidated", "Unrouted"),  # a step from a source the contract does not name
        ("selfheal.cli", "ApprovalGranted", "Unrouted"),
        # The pipeline's own events: their routes, or none at all (no loop through Unrouted).
        ("agentops.qa", "FixValidated", "FixValidated"),
        ("agentops.manager", "ApplyDue", "HealSchedules"),
        ("agentops.manager", "IssueDetected", None),
        ("agentops.manager", "FixApplied", None),
        ("agentops.operator", "ApprovalGranted", "OperatorApproval"),
        ("agentops.engineer", "RemediationRequested", None),  # not the Manager's to take from the Engineer
    ],
)
def test_every_producer_event_reaches_the_manager_once_and_the_pipelines_own_never_loop(
    templates, source, detail_type, rule
):
    from moto.events.models import EventPattern

    event = {"source": source, "detail-type": detail_type, "account": "123456789012", "detail": {"service": "x"}}
    to_manager = _agents_bus_rules_to(templates, "Manager")
    matched = [
        logical_id for logical_id, pattern in to_manager.items() if EventPattern(None, pattern).matches_event(event)
    ]
    assert len(matched) == (rule is not None), matched
    if rule:
        assert matched[0].startswith(f"Routes{rule}"), matched


def test_the_unrouted_rule_takes_no_pipeline_source():
    from selfheal_core.catalog import AGENT_SOURCES, PIPELINE_SOURCE_PREFIX

    # The rule excludes the pipeline by this prefix: a new agent source without it would loop.
    assert all(source.startswith(PIPELINE_SOURCE_PREFIX) for source in AGENT_SOURCES.values())
