"""What the local runtime enforces on behalf of IAM: the event bus resource policy at PutEvents,
SigV4 presence on function URLs with `AWS_IAM` auth, and no direct Invoke of a function that
the template lets be invoked only through its URL.

Locally every client is trusted to hold credentials (there is no IAM to check a signature
against), so identity comes from the access key id: each function's workers carry their own
key (functions.access_key_for), which maps to the function's role ARN; any other key is a
non-agent principal (`arn:aws:iam::<account>:user/<access key id>`). Deny statements of the
template's `AWS::Events::EventBusPolicy` resources are evaluated per PutEvents entry.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .assembly import ACCOUNT, Assembly

PLATFORM_PRINCIPAL = "platform"


# ------------------------------------------------------------------------------ bus policy


def _values(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _arn_like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


_OPERATORS = {
    "StringEquals": lambda v, ps: v in ps,
    "StringNotEquals": lambda v, ps: v not in ps,
    "StringLike": lambda v, ps: any(fnmatch.fnmatchcase(v, p) for p in ps),
    "StringNotLike": lambda v, ps: not any(fnmatch.fnmatchcase(v, p) for p in ps),
    "ArnEquals": lambda v, ps: v in ps,
    "ArnNotEquals": lambda v, ps: v not in ps,
    "ArnLike": lambda v, ps: any(_arn_like(v, p) for p in ps),
    "ArnNotLike": lambda v, ps: not any(_arn_like(v, p) for p in ps),
}


@dataclass(frozen=True)
class DenyStatement:
    sid: str
    bus: str
    conditions: dict[str, dict[str, list[str]]]

    def denies(self, context: dict[str, str]) -> bool:
        for operator, keys in self.conditions.items():
            test = _OPERATORS.get(operator)
            if test is None:
                return False  # an operator we cannot evaluate: do not pretend it matched
            for key, patterns in keys.items():
                if key not in context or not test(context[key], patterns):
                    return False
        return True


class BusPolicy:
    """The Deny statements of the template's event bus policies, by bus name."""

    def __init__(self, statements: list[DenyStatement]) -> None:
        self.statements = statements

    @classmethod
    def from_assembly(cls, assembly: Assembly) -> BusPolicy:
        statements = []
        for res in assembly.of_type("AWS::Events::EventBusPolicy"):
            p = res.properties
            bus = str(p.get("EventBusName") or "default").rsplit("/", 1)[-1]
            raw = p.get("Statement")
            docs = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
            if "Policy" in p and isinstance(p["Policy"], dict):
                docs += list(p["Policy"].get("Statement", []))
            for statement in docs:
                if statement.get("Effect") != "Deny" or "events:PutEvents" not in _values(statement.get("Action", [])):
                    continue
                principal = statement.get("Principal")
                if principal not in ("*", {"AWS": "*"}):
                    continue
                conditions = {
                    op: {k: _values(v) for k, v in keys.items()}
                    for op, keys in (statement.get("Condition") or {}).items()
                }
                statements.append(DenyStatement(str(statement.get("Sid", res.logical_id)), bus, conditions))
        return cls(statements)

    def check(self, principal_arn: str, entry: dict[str, Any]) -> DenyStatement | None:
        """The statement that denies this entry to this principal, or None."""
        bus = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
        context = {
            "aws:PrincipalArn": principal_arn,
            "events:source": str(entry.get("Source", "")),
            "events:detail-type": str(entry.get("DetailType", "")),
        }
        for statement in self.statements:
            if statement.bus == bus and statement.denies(context):
                return statement
        return None


def client_principal(access_key: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{access_key or 'anonymous'}"


# ------------------------------------------------------------------------------ function URLs

SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/lambda/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9\-;]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
LOCAL_USER_HEADER = "x-selfheal-local-user"
_USER = re.compile(r"^[A-Za-z0-9._@+=,\-]{1,64}$")


@dataclass(frozen=True)
class FunctionUrl:
    url_id: str
    function: str
    auth_type: str


def function_urls(assembly: Assembly) -> dict[str, FunctionUrl]:
    urls = {}
    for res in assembly.of_type("AWS::Lambda::Url"):
        target = str(res.properties.get("TargetFunctionArn", ""))
        function = target.split(":")[6] if target.startswith("arn:") else target
        urls[res.physical_id] = FunctionUrl(res.physical_id, function, str(res.properties.get("AuthType", "AWS_IAM")))
    return urls


def url_only_functions(assembly: Assembly) -> frozenset[str]:
    """Names of the functions behind an AWS_IAM URL that the template lets no one Invoke directly.

    On AWS a direct Invoke needs lambda:InvokeFunction, and a direct invoker writes the request
    context (the caller's ARN) itself. Locally every client holds credentials, so the template's
    grants stand in for IAM: a function is URL-only when no Lambda permission grants
    lambda:InvokeFunction on it and every policy statement that does requires
    `lambda:InvokedViaFunctionUrl` (the approver policy's grant)."""
    targets = {
        str(res.properties.get("TargetFunctionArn", ""))
        for res in assembly.of_type("AWS::Lambda::Url")
        if str(res.properties.get("AuthType", "AWS_IAM")) == "AWS_IAM"
    }
    targets = {t for t in targets if t.startswith("arn:")}
    granted: set[str] = set()
    for res in assembly.of_type("AWS::Lambda::Permission"):
        if _grants_invoke(res.properties.get("Action")):
            function = str(res.properties.get("FunctionName", ""))
            granted |= {t for t in targets if function in (t, t.split(":")[6]) or _arn_like(t, function)}
    for statement in _policy_statements(assembly):
        if statement.get("Effect") != "Allow" or not _grants_invoke(statement.get("Action")):
            continue
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        if str(condition.get("lambda:InvokedViaFunctionUrl", "")).lower() == "true":
            continue  # the URL's own path (Lambda requires it of URLs created since October 2025)
        resources = _values(statement.get("Resource", []))
        granted |= {t for t in targets if any(_arn_like(t, r) or _arn_like(f"{t}:$LATEST", r) for r in resources)}
    return frozenset(t.split(":")[6] for t in targets - granted)


def _grants_invoke(action: Any) -> bool:
    return any(fnmatch.fnmatchcase("lambda:invokefunction", a.lower()) for a in _values(action or []))


def _policy_statements(assembly: Assembly) -> list[dict[str, Any]]:
    docs = [r.properties.get("PolicyDocument") for r in assembly.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")]
    for role in assembly.of_type("AWS::IAM::Role"):
        docs += [p.get("PolicyDocument") for p in role.properties.get("Policies") or [] if isinstance(p, dict)]
    statements: list[dict[str, Any]] = []
    for doc in docs:
        raw = doc.get("Statement") if isinstance(doc, dict) else None
        statements += [s for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, dict)]
    return statements


def local_caller(headers: dict[str, str]) -> tuple[str, str] | None:
    """(access key, approver ARN) of a SigV4-signed request, or None when it is not signed.

    There is no IAM locally, so the signature is checked for shape, not verified. The user is
    the `X-Selfheal-Local-User` header when it is one of the signed headers, else the access key.
    """
    match = SIGV4.match(headers.get("authorization", ""))
    if not match or "x-amz-date" not in match.group("headers").split(";"):
        return None
    signed = match.group("headers").split(";")
    user = headers.get(LOCAL_USER_HEADER, "") if LOCAL_USER_HEADER in signed else ""
    user = user or match.group("key")
    if not _USER.match(user):
        return None
    return match.group("key"), f"local:{user}"


def url_event(
    url: FunctionUrl,
    *,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    caller_arn: str,
    source_ip: str,
) -> dict[str, Any]:
    """The payload format 2.0 event Lambda builds for a function URL request with AWS_IAM auth."""
    now = datetime.now(UTC)
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path or "/",
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": url.url_id,
            "authorizer": {
                "iam": {
                    "accessKey": access_key,
                    "accountId": ACCOUNT,
                    "callerId": access_key,
                    "principalOrgId": None,
                    "userArn": caller_arn,
                    "userId": access_key,
                }
            },
            "domainName": headers.get("host", ""),
            "domainPrefix": url.url_id,
            "http": {
                "method": method,
                "path": path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }
