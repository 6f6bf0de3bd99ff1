"""``OtlpExporter``: a sink that sends a run to an OTLP/HTTP endpoint while it runs.

The spans are the core's (``SpanBuilder``), made as the writer's batches come; they go to a
``SpanSender`` thread as protobuf ``ExportTraceServiceRequest`` messages, encoded here from
the builder's spans with ``opentelemetry-proto`` (the SDK's exporter would bring its global
tracer provider and a span model of its own that the builder's spans would have to be
converted to; the messages are what it sends too). The sink is detached as every user sink
is (``SinkFeed``), and its sending never waits on the event loop: ``write_batch`` only builds
spans and appends them to the sender's buffer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import msgspec

from .._otlp_spans import Attributes, AttributeValue, Span, SpanBuilder, TraceParent
from .._version import __version__
from ._otlp_http import SpanSender

try:  # the otlp extra's: without them the exporter cannot be made, and says why
    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
except ImportError as exc:
    _MISSING: ImportError | None = exc
else:
    _MISSING = None

if TYPE_CHECKING:
    from .._events import Event

#: Where OTLP/HTTP receives traces, under the endpoint's address.
TRACES_PATH = "/v1/traces"


def require_otlp_extra() -> None:
    """Raise ImportError naming the ``otlp`` extra when its packages are not installed."""
    if _MISSING is not None:
        raise ImportError(
            f"OtlpExporter needs the otlp extra: pip install 'tracebus[otlp]' ({_MISSING})"
        )


def process_traceparent() -> TraceParent | None:
    """The trace context this process runs in: the current OpenTelemetry span's, when
    ``opentelemetry-api`` is importable and a span is current, else the ``TRACEPARENT``
    environment variable's, else None."""
    try:
        from opentelemetry import trace
    except ImportError:
        pass
    else:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return TraceParent(
                f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags)
            )
    header = os.environ.get("TRACEPARENT")
    return TraceParent.parse(header) if header else None


def traces_url(endpoint: str) -> str:
    """The URL spans are posted to: ``endpoint`` itself when it names a path, else its
    ``/v1/traces``. Raises ValueError for a URL that is not http or https."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"an OTLP/HTTP endpoint is an http:// or https:// URL, not {endpoint!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + TRACES_PATH
    return endpoint


class OtlpExporter:
    """A sink sending the run's spans to the OTLP/HTTP ``endpoint`` (``http://host:4318``,
    spans posted to its ``/v1/traces``; a URL with a path is used as it is) while it runs.

    One span per node attempt, nested by ``parent_id``, span events for retries, notes and
    logs, the GenAI attributes of the node's usage, and the workflow as the root span, whose
    parent is ``traceparent`` (a W3C ``traceparent`` header) if given, else the current
    OpenTelemetry span, else the ``TRACEPARENT`` environment variable (see
    ``docs/otlp.md``). Spans are sent in batches of up to ``max_batch`` spans, at least every
    ``flush_interval`` seconds, with ``headers`` on each request; a batch that meets a
    connection error, a timeout (``timeout`` seconds a request) or HTTP 429/502/503/504 is
    tried again, backing off, for ``retry_window`` seconds. At most ``max_buffer`` spans wait
    to be sent. At the run's close it goes on sending what is left for ``close_timeout``
    seconds (keep it under half the run's own ``close_timeout``, the time a run gives its
    sinks, past which a sink's close is cut short and reported as a SinkError). What could
    not be sent is counted, and the run's metadata reports the counts under ``sinks.otlp``
    (``report()``); a failure to send never raises. An exporter serves one run.

    Raises ValueError for an endpoint that is not an http(s) URL or a ``traceparent`` that is
    not valid, and ImportError naming the ``otlp`` extra when its packages are missing.
    """

    name = "otlp"

    def __init__(
        self,
        endpoint: str = "http://127.0.0.1:4318",
        *,
        headers: Mapping[str, str] | None = None,
        traceparent: str | None = None,
        timeout: float = 10.0,
        max_batch: int = 512,
        max_buffer: int = 50_000,
        flush_interval: float = 1.0,
        retry_window: float = 30.0,
        close_timeout: float = 5.0,
    ) -> None:
        require_otlp_extra()
        self.url = traces_url(endpoint)
        if traceparent is not None:
            parent = TraceParent.parse(traceparent)
            if parent is None:
                raise ValueError(f"not a W3C traceparent: {traceparent!r}")
        else:
            parent = process_traceparent()
        self.traceparent = parent
        if max_batch < 1 or max_buffer < max_batch:
            raise ValueError("max_batch must be at least 1 and max_buffer at least max_batch")
        self._builder = SpanBuilder(parent=parent)
        self._resource: Attributes | None = None
        self._sender = SpanSender(
            lambda: httpx.Client(timeout=timeout),
            self.url,
            self._encode,
            _rejected,
            headers=dict(headers or {}),
            max_batch=max_batch,
            max_buffer=max_buffer,
            flush_interval=flush_interval,
            retry_window=retry_window,
        )
        self._close_timeout = close_timeout
        self._opened = False
        self._closed = False

    def __repr__(self) -> str:
        return f"OtlpExporter({self.url!r})"

    def report(self) -> dict[str, Any]:
        """What the run's metadata says of the export: ``spans_sent`` (accepted by the
        endpoint), ``spans_dropped`` (could not be sent, or were rejected), ``spans_pending``
        (made, not yet sent: none once the run is closed), ``requests_retried`` (requests that
        met a connection error, a timeout or a retryable status) and the first ``error``."""
        sender = self._sender
        return {
            "endpoint": self.url,
            "spans_sent": sender.sent,
            "spans_dropped": sender.dropped,
            "spans_pending": sender.pending,
            "requests_retried": sender.retried,
            "error": sender.error,
        }

    async def aopen(self) -> None:
        if self._opened:
            raise RuntimeError("an OtlpExporter serves one run: make one for each run")
        self._opened = True
        self._sender.start()

    async def write_batch(self, events: Sequence[Event]) -> None:
        builder = self._builder
        spans: list[Span] = []
        for event in events:
            spans += builder.add(_as_dict(event))
        if spans:
            self._offer(spans)

    async def aclose(self) -> None:
        """Send what is left (the workflow's span included, for a run that did not end), for
        ``close_timeout`` seconds at most; what is not sent by then is counted as dropped."""
        if self._closed:
            return
        self._closed = True
        spans = self._builder.finish()
        if spans:
            self._offer(spans)
        sender = self._sender
        sender.close()
        if not self._opened:
            return
        try:
            with anyio.move_on_after(self._close_timeout):
                await anyio.to_thread.run_sync(sender.done.wait, abandon_on_cancel=True)
        finally:
            if not sender.done.is_set():
                sender.abandon()

    def _offer(self, spans: list[Span]) -> None:
        if self._resource is None:
            self._resource = self._builder.resource()
        self._sender.offer(spans)

    def _encode(self, spans: list[Span]) -> bytes:
        """The request posting ``spans`` (called on the sender's thread)."""
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=Resource(attributes=_key_values(self._resource or [])),
                    scope_spans=[
                        ScopeSpans(
                            scope=InstrumentationScope(name="tracebus", version=__version__),
                            spans=[_proto_span(span) for span in spans],
                        )
                    ],
                )
            ]
        )
        body: bytes = request.SerializeToString()
        return body


def _proto_span(span: Span) -> ProtoSpan:
    message = ProtoSpan(
        trace_id=bytes.fromhex(span.trace_id),
        span_id=bytes.fromhex(span.span_id),
        parent_span_id=bytes.fromhex(span.parent_span_id),
        name=span.name,
        kind=ProtoSpan.SPAN_KIND_INTERNAL,
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=span.end_ns,
        attributes=_key_values(span.attributes),
        events=[
            ProtoSpan.Event(
                time_unix_nano=event.time_ns,
                name=event.name,
                attributes=_key_values(event.attributes),
            )
            for event in span.events
        ],
        dropped_events_count=span.dropped_events,
    )
    if span.error is not None:
        message.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=span.error))
    return message


def _as_dict(event: Event) -> dict[str, Any]:
    """An event as its trace line reads, once decoded (what the file export builds from)."""
    line: dict[str, Any] = msgspec.to_builtins(event)
    return line


def _key_values(attributes: Attributes) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in attributes]


def _any_value(value: AttributeValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def _rejected(body: bytes) -> tuple[int, str]:
    """The spans a successful response says were rejected (OTLP's partial success), and
    why."""
    if not body:
        return 0, ""
    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(body)
    except Exception:  # not protobuf (a proxy's page): nothing said of rejections
        return 0, ""
    partial = response.partial_success
    return partial.rejected_spans, partial.error_message or "rejected by the endpoint"
