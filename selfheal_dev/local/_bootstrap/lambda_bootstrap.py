"""Worker process of the local runtime: plays the Lambda runtime for one function.

Started as a script (its directory holds nothing else, so nothing is shadowed) with
PYTHONPATH = the function's code asset + its layers' python/ folders, exactly the import
roots Lambda gives the handler. Protocol: one JSON request per line on stdin, one JSON
reply per line on the fd named by SELFHEAL_REPLY_FD; the handler's own stdout/stderr (logs, EMF) go to the runtime,
which ingests them as CloudWatch Logs and metrics.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import sys
import time
import traceback
import uuid
from typing import Any

_INIT_STARTED = time.perf_counter()


class LambdaContext:
    """The attributes and method of the Python Lambda context object."""

    def __init__(self, request_id: str, deadline_ms: float) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = os.environ.get("SELFHEAL_LOCAL_FUNCTION_ARN", "")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc)[:4000],
        "stackTrace": traceback.format_exception(exc)[-20:],
    }


def main() -> None:
    # Ctrl-C in the terminal reaches the whole process group; the runtime decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(int(os.environ.pop("SELFHEAL_REPLY_FD")), "w", buffering=1)
    handler_path = os.environ["_HANDLER"]
    module_name, _, func_name = handler_path.rpartition(".")
    init_error: dict[str, Any] | None = None
    handler = None
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
    except BaseException as exc:  # noqa: BLE001 - an init failure is reported like Lambda does
        init_error = {**_error(exc), "errorType": f"Runtime.ImportModuleError: {type(exc).__name__}"}
    init_ms = (time.perf_counter() - _INIT_STARTED) * 1000
    replies.write(json.dumps({"type": "ready", "init_ms": init_ms, "error": init_error}) + "\n")
    if init_error:
        sys.stdout.flush()
        return
    first = True
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        request_id = request.get("request_id") or str(uuid.uuid4())
        context = LambdaContext(request_id, request["deadline_ms"])
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        started = time.perf_counter()
        reply: dict[str, Any] = {"type": "result", "id": request["id"], "request_id": request_id, "cold": first}
        try:
            reply["ok"] = True
            reply["result"] = handler(request["event"], context)  # type: ignore[misc]
            json.dumps(reply["result"], default=str)
        except Exception as exc:  # noqa: BLE001 - handler errors are the invocation's result
            reply["ok"] = False
            reply["error"] = _error(exc)
            print(
                json.dumps({"timestamp": time.time(), "level": "ERROR", "requestId": request_id, **reply["error"]}),
                flush=True,
            )
        reply["duration_ms"] = (time.perf_counter() - started) * 1000
        reply["max_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END RequestId: {request_id}", flush=True)
        replies.write(json.dumps(reply, default=str) + "\n")
        first = False


if __name__ == "__main__":
    main()
