"""boto3 clients, created lazily and cached per process (honours AWS_ENDPOINT_URL locally)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3

    return boto3.client(service)


@cache
def table(name: str) -> Any:
    import boto3

    return boto3.resource("dynamodb").Table(name)


def reset_clients() -> None:
    """Tests call this when they switch the mocked account or endpoint."""
    client.cache_clear()
    table.cache_clear()


# Error codes AWS answers when the same call may succeed shortly: throttling, a service busy or
# failing inside, Lambda's "an update is in progress". A step that meets one raises, so the Lambda
# retry (then the DLQ) redoes it; any other error fails the same way every time and is handled
# where it is met (a gap, an escalation). One list for every caller.
TRANSIENT_ERRORS = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
        "InternalFailure",
        "InternalException",
        "ResourceConflictException",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    return error_code(exc) in TRANSIENT_ERRORS
