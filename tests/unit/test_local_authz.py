"""The local runtime's reading of the bus policy, of SigV4 on function URLs and of who may Invoke a
function directly (no runtime started)."""

from __future__ import annotations

from selfheal_dev.local.assembly import Resource
from selfheal_dev.local.authz import BusPolicy, DenyStatement, local_caller, url_only_functions

QA_ROLE = "arn:aws:iam::123456789012:role/QaRole"
POLICY = BusPolicy(
    [
        DenyStatement(
            "OnlyQa",
            "agentops-dev",
            {
                "StringEquals": {"events:source": ["agentops.qa"]},
                "ArnNotEquals": {"aws:PrincipalArn": [QA_ROLE]},
            },
        )
    ]
)


def entry(source: str, bus: str = "agentops-dev") -> dict[str, str]:
    return {"Source": source, "DetailType": "FixValidated", "Detail": "{}", "EventBusName": bus}


def test_only_the_named_role_may_send_the_source() -> None:
    assert POLICY.check(QA_ROLE, entry("agentops.qa")) is None
    assert POLICY.check("arn:aws:iam::123456789012:user/ASIAX", entry("agentops.qa")).sid == "OnlyQa"
    assert POLICY.check("arn:aws:iam::123456789012:role/ManagerRole", entry("agentops.qa")) is not None


def test_other_sources_and_other_buses_are_not_restricted() -> None:
    assert POLICY.check("arn:aws:iam::123456789012:user/x", entry("com.example.orders")) is None
    assert POLICY.check("arn:aws:iam::123456789012:user/x", entry("agentops.qa", bus="default")) is None
    arn_bus = "arn:aws:events:us-east-1:123456789012:event-bus/agentops-dev"
    assert POLICY.check("arn:aws:iam::123456789012:user/x", entry("agentops.qa", bus=arn_bus)) is not None


SIGNED = (
    "AWS4-HMAC-SHA256 Credential=ASIALOCALOPERATOR00/20261127/us-east-1/lambda/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-selfheal-local-user, Signature=" + "a" * 64
)


def test_unsigned_or_malformed_requests_have_no_caller() -> None:
    assert local_caller({}) is None
    assert local_caller({"authorization": "Bearer abc"}) is None
    assert local_caller({"authorization": SIGNED.replace("/lambda/", "/events/")}) is None  # wrong service
    assert local_caller({"authorization": SIGNED.replace("a" * 64, "nothex")}) is None


def test_the_user_header_counts_only_when_signed() -> None:
    assert local_caller({"authorization": SIGNED, "x-selfheal-local-user": "alice"}) == (
        "ASIALOCALOPERATOR00",
        "local:alice",
    )
    unsigned_header = SIGNED.replace(";x-selfheal-local-user", "")
    assert local_caller({"authorization": unsigned_header, "x-selfheal-local-user": "mallory"}) == (
        "ASIALOCALOPERATOR00",
        "local:ASIALOCALOPERATOR00",
    )
    assert local_caller({"authorization": SIGNED, "x-selfheal-local-user": "a b;c"}) is None


APPROVALS = "arn:aws:lambda:us-east-1:123456789012:function:selfheal-dev-approvals"
MANAGER = "arn:aws:lambda:us-east-1:123456789012:function:selfheal-dev-manager"


class Template:
    """Just enough of an Assembly: resolved resources by type."""

    def __init__(self, *resources: tuple[str, dict]) -> None:
        self.resources = [Resource("S", f"R{i}", kind, props, {}) for i, (kind, props) in enumerate(resources)]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]


URL = ("AWS::Lambda::Url", {"AuthType": "AWS_IAM", "TargetFunctionArn": APPROVALS})
VIA_URL = {
    "Effect": "Allow",
    "Action": "lambda:InvokeFunction",
    "Resource": APPROVALS,
    "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
}


def policy(*statements: dict) -> tuple[str, dict]:
    return ("AWS::IAM::ManagedPolicy", {"PolicyDocument": {"Statement": list(statements)}})


def test_a_function_invoked_only_through_its_iam_url_is_url_only() -> None:
    url_grant = {"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": APPROVALS}
    manager_rule = ("AWS::Lambda::Permission", {"Action": "lambda:InvokeFunction", "FunctionName": MANAGER})
    assert url_only_functions(Template(URL, policy(url_grant, VIA_URL), manager_rule)) == {"selfheal-dev-approvals"}
    open_url = ("AWS::Lambda::Url", {"AuthType": "NONE", "TargetFunctionArn": MANAGER})
    assert url_only_functions(Template(open_url)) == frozenset()


def test_any_grant_of_a_direct_invoke_makes_it_invocable() -> None:
    unconditioned = {k: v for k, v in VIA_URL.items() if k != "Condition"}
    for grant in (
        policy(unconditioned),
        policy({**unconditioned, "Action": ["s3:GetObject", "lambda:*"], "Resource": "*"}),
        policy({**unconditioned, "Resource": f"{APPROVALS}:*"}),
        ("AWS::IAM::Role", {"Policies": [{"PolicyDocument": {"Statement": [unconditioned]}}]}),
        ("AWS::Lambda::Permission", {"Action": "lambda:InvokeFunction", "FunctionName": "selfheal-dev-approvals"}),
    ):
        assert url_only_functions(Template(URL, policy(VIA_URL), grant)) == frozenset(), grant
    denied = {**unconditioned, "Effect": "Deny"}
    assert url_only_functions(Template(URL, policy(denied))) == {"selfheal-dev-approvals"}
