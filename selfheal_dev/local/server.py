"""The emulator's HTTP server: werkzeug's threaded server with a request handler that keeps
connections alive.

werkzeug's development server answers every request with `Connection: close`, and after each
response waits up to 10 ms for the client to hang up: every AWS SDK call of an agent then paid
a new TCP connection and a new server thread, and sent its headers and body in two writes. This
handler reads the request body whole (Content-Length), buffers the application's answer
(the emulator never streams), and writes status, headers and body in one send on a
TCP_NODELAY socket; the connection stays open for the client's next request (HTTP/1.1, as
botocore's connection pool expects). Chunked uploads keep werkzeug's own path (and close).
"""

from __future__ import annotations

import io
import socket
import traceback
from collections.abc import Callable
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import make_server

NO_BODY_STATUSES = (204, 304)


class KeepAliveHandler(MotoRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def run_wsgi(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            super().run_wsgi()  # werkzeug dechunks the body, and closes the connection afterwards
            return
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return chunks.append  # the WSGI write() callable, for applications that use it

        chunks: list[bytes] = []
        try:
            answer = self.server.app(environ, start_response)
            try:
                chunks.extend(answer)
            finally:
                if hasattr(answer, "close"):
                    answer.close()
        except Exception:  # noqa: BLE001 - as werkzeug: log it, answer 500, keep serving
            self.server.log("error", f"Error on request:\n{traceback.format_exc()}")
            started[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            chunks[:] = [b"Internal Server Error"]
            self.close_connection = True
        status, headers = started
        self._respond(status, headers, b"".join(chunks))

    def _respond(self, status: str, headers: list[tuple[str, str]], data: bytes) -> None:
        code = int(status.split(None, 1)[0])
        lines = [f"{self.protocol_version} {status}", f"Server: {self.version_string()}"]
        lines.append(f"Date: {self.date_time_string()}")
        has_length = False
        for key, value in headers:
            lower = key.lower()
            if lower == "connection":
                if value.lower() == "close":
                    self.close_connection = True
                continue
            has_length = has_length or lower == "content-length"
            lines.append(f"{key}: {value}")
        if not has_length and code not in NO_BODY_STATUSES and not 100 <= code < 200:
            lines.append(f"Content-Length: {len(data)}")
        if self.close_connection:
            lines.append("Connection: close")
        if self.command == "HEAD" or code in NO_BODY_STATUSES:
            data = b""
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + data)
        self.wfile.flush()


def make_emulator_server(host: str, port: int, app: Callable[..., Any]) -> Any:
    """A threaded server (one thread per connection) that keeps connections alive."""
    return make_server(host, port, app, threaded=True, request_handler=KeepAliveHandler)
