"""A local Anthropic-compatible Messages API for tests: plays a script, records every request.

    with AnthropicTestServer(script=[rate_limited(), tool_use({...})]) as srv:
        client = anthropic.Anthropic(api_key="test", base_url=srv.base_url)
        ...
        srv.requests  # one RecordedRequest per HTTP request, retries included

Binds 127.0.0.1 on an ephemeral port. When the script runs out, the server answers 500
with `x-should-retry: false`, so a test that sends more requests than it scripted fails loudly.

It also serves Amazon Bedrock's InvokeModel for Anthropic models, the way `AnthropicBedrock`
calls it: `POST /model/{modelId}/invoke`, the Messages body without `model` (the model id is in
the path) and with an `anthropic_version` (Bedrock's "bedrock-2023-05-31", or the dated version
the SDK sends), SigV4-signed for the
`bedrock` service; the answer is the same Messages response body. Point the client at it
with `base_url=` or `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`. A Bedrock request that is not signed,
carries an API key, names a model in the body or lacks the version gets Bedrock's 400/403
(`x-amzn-errortype`), so a client that talks the wrong dialect fails loudly.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

DEFAULT_USAGE = {
    "input_tokens": 1_250,
    "output_tokens": 420,
    "cache_creation_input_tokens": 1_800,
    "cache_read_input_tokens": 0,
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_body: str
    body: dict[str, Any]


# ------------------------------------------------------------------------- script builders


def _message(
    content: list[dict[str, Any]], stop_reason: str, usage: dict[str, int] | None, model: str
) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**DEFAULT_USAGE, **(usage or {})},
    }


def tool_use(
    tool_input: dict[str, Any],
    *,
    name: str = "submit_fix",
    usage: dict[str, int] | None = None,
    model: str = "claude-sonnet-4-5",
    delay_s: float = 0.0,
) -> Reply:
    """A model answer that calls `name` with `tool_input` (good, broken or schema-invalid input)."""
    block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": tool_input}
    return Reply(200, _message([block], "tool_use", usage, model), delay_s=delay_s)


def text(answer: str, *, usage: dict[str, int] | None = None, model: str = "claude-sonnet-4-5") -> Reply:
    """A model answer without any tool call."""
    return Reply(200, _message([{"type": "text", "text": answer}], "end_turn", usage, model))


def api_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return Reply(status, body, {"request-id": f"req_{uuid.uuid4().hex[:12]}", **(headers or {})})


def rate_limited(retry_after_s: float = 0.01) -> Reply:
    return api_error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit.",
        {"retry-after": f"{retry_after_s:g}"},
    )


def overloaded() -> Reply:
    return api_error(529, "overloaded_error", "Overloaded")


def server_error() -> Reply:
    return api_error(500, "api_error", "Internal server error")


def slow(reply: Reply, delay_s: float) -> Reply:
    return Reply(reply.status, reply.body, reply.headers, delay_s=delay_s)


_EXHAUSTED = api_error(500, "api_error", "test server script exhausted", {"x-should-retry": "false"})
BEDROCK_INVOKE = re.compile(r"^/model/(?P<model>[^/]+)/invoke$")
BEDROCK_VERSION = re.compile(r"^(?:bedrock-)?\d{4}-\d{2}-\d{2}$")


def bedrock_error(status: int, error_type: str, message: str) -> Reply:
    """Bedrock's error shape: {"message": ...} and the type in `x-amzn-errortype`."""
    return Reply(
        status,
        {"message": message},
        {"x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/", "x-should-retry": "false"},
    )


def bedrock_problem(headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
    """Why a Bedrock InvokeModel request would be refused, or None when it is well-formed."""
    auth = headers.get("authorization", "")
    if not re.match(r"AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/[a-z0-9-]+/bedrock/aws4_request", auth):
        return bedrock_error(
            403, "UnrecognizedClientException", "The security token included in the request is invalid"
        )
    if "x-api-key" in headers:
        return bedrock_error(400, "ValidationException", "x-api-key is not a Bedrock header")
    if "model" in body or not BEDROCK_VERSION.fullmatch(str(body.get("anthropic_version", ""))):
        return bedrock_error(400, "ValidationException", "malformed input request: model in body or wrong version")
    return None


# ------------------------------------------------------------------------------------ server


class AnthropicTestServer:
    """`responder`, when given, answers every request the script does not (fault-injection runs
    decide per request, from its body, instead of scripting a fixed order)."""

    def __init__(
        self, script: list[Reply] | None = None, responder: Callable[[RecordedRequest], Reply] | None = None
    ) -> None:
        self.script = list(script or [])
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval keeps shutdown (one per test) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="anthropic-test-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def bodies(self) -> list[str]:
        return [r.raw_body for r in self.requests]

    def __enter__(self) -> AnthropicTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # wakes handlers sleeping on a slow reply
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
        return self.responder(request) if self.responder else _EXHAUSTED

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real API

            def do_POST(self) -> None:  # http.server naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.split("?")[0]
                body = json.loads(raw or "{}")
                bedrock = BEDROCK_INVOKE.match(path)
                if bedrock is not None:
                    problem = bedrock_problem(headers, body)
                    if problem is not None:
                        with server._lock:
                            server.requests.append(RecordedRequest("POST", unquote(self.path), headers, raw, body))
                        self._send(problem)
                        return
                elif path != "/v1/messages":
                    self._send(api_error(404, "not_found_error", f"no route {self.path}"))
                    return
                reply = server._next(RecordedRequest("POST", unquote(self.path), headers, raw, body))
                if reply.delay_s and server._closing.wait(reply.delay_s):
                    return
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to deliver

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        return Handler
