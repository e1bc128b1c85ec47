"""Red-team (e2e): the approvals boundary on the local runtime, attacked with the stock AWS CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import e2e_assembly  # noqa: F401 - the session's synthesized app
from tests.security.test_approvals import _awaiting_incident, _status, _wait, runtime  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

FORGED = "arn:aws:iam::123456789012:user/ceo"


def test_a_direct_invoke_of_the_approvals_function_cannot_approve_as_anyone(
    runtime: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Expected: the approvals function only decides for a caller authenticated by its function
    URL (AWS_IAM): `aws lambda invoke --function-name selfheal-dev-approvals` with a
    hand-written `requestContext.authorizer.iam.userArn` approves nothing (or at least is not
    recorded as that ARN).

    Why it matters: README, "Local runtime": the runtime "still enforces the two trust
    boundaries"; the approver is `local:<user>` and unsigned URL requests get 403. But the
    runtime serves lambda:Invoke of every template function to any client key
    (selfheal_dev/local/runtime.py `_lambda_invoke`), and lambdas/approvals trusts whatever
    requestContext the event carries. The stock CLI thus approves a production-shaped change as
    any IAM ARN it likes; on AWS the same holds for any principal allowed lambda:InvokeFunction
    on the function, which is a far wider right than the approver policy's InvokeFunctionUrl."""
    incident = _awaiting_incident(runtime, tmp_path, "direct-invoke-api")
    event = {
        "version": "2.0",
        "requestContext": {"http": {"method": "POST"}, "authorizer": {"iam": {"userArn": FORGED}}},
        "body": json.dumps({"incident_id": incident["incident_id"], "decision": "approve", "comment": "ship it"}),
        "isBase64Encoded": False,
    }
    payload = tmp_path / "forged.json"
    payload.write_text(json.dumps(event))
    runtime.aws(
        "lambda",
        "invoke",
        "--function-name",
        "selfheal-dev-approvals",
        "--payload",
        f"file://{payload}",
        str(tmp_path / "answer.json"),
        check=False,
    )
    answer = (tmp_path / "answer.json").read_text() if (tmp_path / "answer.json").exists() else ""

    runtime.idle(timeout=60)
    _wait(lambda: _status(runtime, incident["incident_id"]) != "AWAITING_APPROVAL", 20)
    trace = json.loads(runtime.selfheal("trace", incident["incident_id"], "--json").stdout)
    approvals = [
        d["reasoning_chain"][0]["thought"] for d in trace["decisions"] if d["decision_type"] == "human_approval"
    ]
    assert _status(runtime, incident["incident_id"]) == "AWAITING_APPROVAL", (
        f"approved through a direct invoke: answer {answer[:300]}, human_approval decisions {approvals}"
    )
