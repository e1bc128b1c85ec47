"""`selfheal approve|reject`: a SigV4-signed call to the approvals function URL."""

from __future__ import annotations

import getpass
import json
import os
import urllib.error
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

from .target import OperatorError, Target

LOCAL_USER_HEADER = "X-Selfheal-Local-User"


def approvals_url(target: Target) -> str:
    """The approvals function URL: the stack output, else Lambda's URL config for the function."""
    url = target.output("ApprovalsUrl")
    if url:
        return str(url)
    try:
        return str(
            target.client("lambda").get_function_url_config(FunctionName=target.function("approvals"))["FunctionUrl"]
        )
    except (ClientError, BotoCoreError) as exc:  # explained to the operator
        raise OperatorError(
            f"cannot find the approvals function URL for env {target.env!r} ({type(exc).__name__}); "
            "is the pipeline stack deployed?"
        ) from exc


def approval(
    target: Target,
    incident_id: str,
    *,
    granted: bool,
    comment: str = "",
    typed_name: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Approve or reject through the approvals function URL, SigV4-signed with the operator's
    credentials. The function records the caller's IAM ARN as the approver (locally
    `local:<user>`); a typed name only travels as part of the comment."""
    url = approvals_url(target)
    body: dict[str, Any] = {
        "incident_id": incident_id,
        "decision": "approve" if granted else "reject",
        "comment": comment,
    }
    if typed_name:
        body["approver"] = typed_name
    credentials = target.boto().get_credentials()
    if credentials is None:
        raise OperatorError("no AWS credentials: approvals are signed with your IAM identity")
    headers = {"Content-Type": "application/json"}
    if target.local:  # no IAM locally: the runtime names the approver local:<user> from this signed header
        headers[LOCAL_USER_HEADER] = os.environ.get("USER") or getpass.getuser()
    request = AWSRequest(method="POST", url=url, data=json.dumps(body).encode(), headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", target.region).add_auth(request)
    prepared = request.prepare()
    http_request = urllib.request.Request(url, data=prepared.body, headers=dict(prepared.headers), method="POST")  # noqa: S310 - the URL is our stack's output
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:  # noqa: S310
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read()
    try:
        result = json.loads(answer or b"{}")
    except ValueError:
        result = {"error": answer.decode("utf-8", "replace")[:500]}
    if status == 403:
        raise OperatorError(
            "the approvals URL refused your credentials: attach the "
            f"selfheal-{target.env}-approver policy to your IAM identity"
        )
    if status >= 400:
        what = "approval" if granted else "rejection"
        raise OperatorError(f"{what} refused ({status}): {result.get('error') or result.get('Message') or result}")
    return {"incident_id": incident_id, **result, "http_status": status}
