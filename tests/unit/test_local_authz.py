"""The local runtime's reading of the bus policy and of SigV4 on function URLs (no runtime started)."""

from __future__ import annotations

from selfheal_dev.local.authz import BusPolicy, DenyStatement, local_caller

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
