"""A real OTLP/HTTP receiver for the tests: ``http.server`` on a socket of 127.0.0.1, in a
thread, decoding each ``ExportTraceServiceRequest`` with opentelemetry-proto."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class OtlpReceiver:
    """Receives spans on ``url`` (``http://127.0.0.1:PORT``) from ``start`` to ``stop``; it
    can be started again on the same port. ``answers`` are the HTTP statuses to give the
    next requests (then 200); a request answered otherwise keeps nothing."""

    def __init__(self) -> None:
        self.port = 0
        self.spans: list[Span] = []
        self.requests: list[ExportTraceServiceRequest] = []
        self.answers: list[int] = []
        self.refused = 0
        self.hold: threading.Event | None = None
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hold is not None:
                    receiver.hold.wait()
                receiver._take(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the socket: connections are refused until ``start`` again."""
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None

    def _take(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._changed:
            status = self.answers.pop(0) if self.answers else 200
            if status == 200:
                assert handler.path == "/v1/traces", handler.path
                assert handler.headers["Content-Type"] == "application/x-protobuf"
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                self.requests.append(request)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        self.spans.extend(scope.spans)
            else:
                self.refused += 1
            self._changed.notify_all()
        reply = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/x-protobuf")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def wait_for(self, condition: Callable[[OtlpReceiver], bool], timeout: float = 30.0) -> None:
        """Wait until ``condition(self)`` holds (checked at each request); raise
        TimeoutError if it does not within ``timeout`` (a hang, not a speed check)."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self), timeout):
                raise TimeoutError("the receiver did not get what was expected")
