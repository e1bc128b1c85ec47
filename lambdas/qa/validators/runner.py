"""How QA reaches the QA runner: one synchronous `lambda:Invoke` per run, each its own tenant."""

from __future__ import annotations

import json
import uuid
from typing import Any, Protocol

from selfheal_core.qa_run import RunBundle, RunReply

MAX_PAYLOAD_BYTES = 6 * 1000 * 1000  # Lambda's limit for a RequestResponse request


class RunnerError(RuntimeError):
    """The runner function failed (crashed, timed out) rather than reporting a run."""


class Runner(Protocol):
    def run(self, bundle: RunBundle) -> RunReply: ...


class LambdaRunner:
    """Invokes the runner function (RequestResponse) with a fresh tenant id for every run.

    A fresh tenant id means a fresh execution environment (the function is PER_TENANT), so
    nothing a run leaves behind can reach the next one. Client retries are off: a retried
    request would carry the same tenant id into an environment that already served it.
    """

    def __init__(self, function_name: str, *, read_timeout_s: float = 120.0, client: Any = None) -> None:
        self.function_name = function_name
        self.read_timeout_s = read_timeout_s
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "lambda",
                config=Config(
                    read_timeout=self.read_timeout_s,
                    connect_timeout=10,
                    retries={"max_attempts": 1, "mode": "standard"},
                ),
            )
        return self._client

    def run(self, bundle: RunBundle) -> RunReply:
        payload = json.dumps(bundle.model_dump(mode="json")).encode()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise RunnerError(
                f"the bundle is {len(payload)} bytes; a synchronous invocation carries at most {MAX_PAYLOAD_BYTES}"
            )
        response = self.client.invoke(
            FunctionName=self.function_name,
            InvocationType="RequestResponse",
            Payload=payload,
            TenantId=str(uuid.uuid4()),
        )
        answer = response["Payload"].read()
        if response.get("FunctionError"):
            try:
                error = json.loads(answer)
            except ValueError:
                error = {}
            raise RunnerError(
                f"the QA runner failed: {error.get('errorType', 'error')}: {str(error.get('errorMessage', ''))[:300]}"
            )
        return RunReply.model_validate_json(answer)
