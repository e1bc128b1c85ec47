"""Template guarantees behind authentic events and approvals, and against a confused deputy."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

AGENT_ROLES = {
    "agentops.manager": "ManagerAgentRole",
    "agentops.engineer": "EngineerAgentRole",
    "agentops.qa": "QaAgentRole",
    "agentops.operator": "ApprovalsFunctionRole",
}


def test_bus_policy_lets_only_each_agents_role_send_its_source(templates):
    # Given the pipeline template's event bus policies
    policies = templates["pipeline"].find_resources("AWS::Events::EventBusPolicy")
    statements = [p["Properties"]["Statement"] for p in policies.values()]

    # Then every agentops source has a Deny for any principal but its own role
    by_source = {}
    look_alikes = []
    for statement in statements:
        assert statement["Effect"] == "Deny" and statement["Action"] == "events:PutEvents"
        assert statement["Principal"] in ("*", {"AWS": "*"})
        if "StringEquals" in statement["Condition"]:
            by_source[statement["Condition"]["StringEquals"]["events:source"]] = statement
        else:
            look_alikes.append(statement)
    assert set(by_source) == set(AGENT_ROLES)
    # and one more denies every other agentops.* source to everyone (no principal spared)
    [look_alike] = look_alikes
    assert look_alike["Condition"] == {
        "StringLike": {"events:source": "agentops.*"},
        "StringNotEquals": {"events:source": sorted(AGENT_ROLES)},
    }
    for source, role in AGENT_ROLES.items():
        principal = by_source[source]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        if source == "agentops.manager":  # the Manager's one-time schedules send ApplyDue / VerifyDue as the Manager
            principal, scheduler = principal
            assert scheduler["Fn::GetAtt"][0].startswith("HealSchedulerRole")
        assert principal["Fn::GetAtt"][0].startswith(role) and principal["Fn::GetAtt"][1] == "Arn"


def test_approvals_function_url_uses_aws_iam_auth(templates):
    pipeline = templates["pipeline"]
    pipeline.has_resource_properties(
        "AWS::Lambda::Function", {"FunctionName": "selfheal-dev-approvals", "Handler": "approvals.handler.handler"}
    )
    urls = pipeline.find_resources("AWS::Lambda::Url")
    assert len(urls) == 1
    [url] = urls.values()
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert url["Properties"]["TargetFunctionArn"]["Fn::GetAtt"][0].startswith("ApprovalsFunction")
    # No resource policy opens the URL to everyone (what AuthType NONE needs).
    for permission in pipeline.find_resources("AWS::Lambda::Permission").values():
        assert permission["Properties"]["Action"] != "lambda:InvokeFunctionUrl"


def test_approver_managed_policy_grants_only_invoking_the_approvals_url(templates):
    templates["pipeline"].has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "ManagedPolicyName": "selfheal-dev-approver",
            "PolicyDocument": {
                "Statement": [
                    {
                        "Action": "lambda:InvokeFunctionUrl",
                        "Effect": "Allow",
                        "Resource": {"Fn::GetAtt": [Match.string_like_regexp("^ApprovalsFunction"), "Arn"]},
                        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                    },
                    {
                        # never a direct Invoke, whose event could carry any request context
                        "Action": "lambda:InvokeFunction",
                        "Effect": "Allow",
                        "Resource": {"Fn::GetAtt": [Match.string_like_regexp("^ApprovalsFunction"), "Arn"]},
                        "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
                    },
                ],
                "Version": "2012-10-17",
            },
        },
    )


def test_nothing_grants_a_direct_invoke_of_the_approvals_function(templates):
    """A direct Invoke writes its own request context (the approver): lambda:InvokeFunction on the
    approvals function is granted only through its URL, and no resource policy opens it."""
    import fnmatch

    def approvals(resource) -> bool:
        return resource == "*" or "ApprovalsFunction" in json.dumps(resource)

    for template in templates.values():
        resources = template.to_json()["Resources"].values()
        for resource in resources:
            if resource["Type"] == "AWS::Lambda::Permission":
                assert not approvals(resource["Properties"]["FunctionName"]), resource
        documents = [r.get("Properties", {}).get("PolicyDocument") for r in resources]
        documents += [p["PolicyDocument"] for r in resources for p in r.get("Properties", {}).get("Policies") or []]
        for document in documents:
            for statement in document.get("Statement", []) if isinstance(document, dict) else []:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                if (
                    statement["Effect"] == "Allow"
                    and any(fnmatch.fnmatchcase("lambda:InvokeFunction", a) for a in actions)
                    and any(approvals(t) for t in targets)
                ):
                    assert statement["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}, statement


def test_approvals_role_reads_incidents_and_sends_only_operator_events(templates):
    policies = templates["pipeline"].find_resources("AWS::IAM::Policy")
    [approvals] = [p for name, p in policies.items() if name.startswith("ApprovalsFunctionRole")]
    statements = approvals["Properties"]["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "events:PutEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        # its own on-failure queue (the AgentFunction destination)
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    [put] = [s for s in statements if s["Action"] == "events:PutEvents"]
    assert put["Condition"] == {"StringEquals": {"events:source": "agentops.operator"}}


def test_no_other_role_may_send_operator_events(templates):
    for name, policy in templates["pipeline"].find_resources("AWS::IAM::Policy").items():
        if name.startswith("ApprovalsFunctionRole"):
            continue
        assert "agentops.operator" not in json.dumps(policy)


def _service_statements(document: dict) -> list[dict]:
    return [s for s in document["Statement"] if isinstance(s.get("Principal"), dict) and "Service" in s["Principal"]]


def test_sns_and_kms_grants_to_events_and_cloudwatch_carry_source_conditions(templates):
    data = templates["data"]
    documents = [k["Properties"]["KeyPolicy"] for k in data.find_resources("AWS::KMS::Key").values()]
    documents += [p["Properties"]["PolicyDocument"] for p in data.find_resources("AWS::SNS::TopicPolicy").values()]
    granted = set()
    for document in documents:
        for statement in _service_statements(document):
            services = statement["Principal"]["Service"]
            services = [services] if isinstance(services, str) else services
            assert len(services) == 1, "one service per statement, each with its own source ARN"
            granted.add(services[0])
            condition = statement["Condition"]
            assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
            source_arn = json.dumps(condition["ArnLike"]["aws:SourceArn"])
            expected = ":alarm:selfheal-dev-*" if services[0].startswith("cloudwatch") else ":rule/agentops-dev/*"
            assert expected in source_arn
    assert granted == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}


def _grants_on(template, table_logical_id: str) -> dict[str, set[str]]:
    """Role logical ids -> the actions any of their policies grants on the table (by its ARN)."""
    grants: dict[str, set[str]] = {}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"] if isinstance(r, dict) and "Ref" in r]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if table_logical_id not in json.dumps(statement.get("Resource")) or statement["Effect"] != "Allow":
                continue
            actions = statement["Action"]
            for role in roles:
                grants.setdefault(role, set()).update([actions] if isinstance(actions, str) else actions)
    return grants


def test_only_qas_role_may_write_a_verdict_and_the_engineer_cannot_even_read_one(templates):
    # Given the validations table, and every policy that names it (by import from the data stack)
    data = templates["data"].to_json()["Resources"]
    [table_id] = [lid for lid, r in data.items() if r["Properties"].get("TableName") == "agent-validations-dev"]
    grants = _grants_on(templates["pipeline"], table_id)

    # Then QA may write and read, the Manager may only read, and no one else has anything
    by_role = {role.split("AgentRole")[0] if "AgentRole" in role else role: actions for role, actions in grants.items()}
    assert by_role == {
        "Qa": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "Manager": {"dynamodb:GetItem", "dynamodb:BatchGetItem"},
    }, grants
    for template in templates.values():
        for policy in template.find_resources("AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                resource = json.dumps(statement.get("Resource"))
                actions = json.dumps(statement["Action"])
                assert not ("dynamodb:*" in actions or ('"*"' in resource and "dynamodb" in actions)), statement
