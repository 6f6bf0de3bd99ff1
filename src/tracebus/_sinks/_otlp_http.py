"""The OTLP exporter's sending: a thread of its own that posts batches of spans, retrying.

The exporter hands it finished spans (``offer``, which never waits: it takes the buffer's
lock only to append); the thread posts them in batches of ``max_batch`` (or what is there
every ``flush_interval``), each as one protobuf ``ExportTraceServiceRequest``. A connection
error, a timeout and HTTP 429, 502, 503 and 504 are retried with exponential backoff (or the
server's ``Retry-After``) until ``retry_window`` has passed since the batch's first try; the
spans behind it wait in the buffer, up to ``max_buffer`` (the spans past it are dropped, and
counted). What could not be sent is counted in ``dropped``, with the first reason in
``error``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from .._otlp_spans import Span

#: The responses that mean "try again later" (OTLP/HTTP's retryable codes).
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
#: The first wait before a retry, and the longest.
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 4.0


class SpanSender:
    """Posts spans to ``url`` from a thread started by ``start`` and ended by ``close``, with
    the HTTP client ``connect`` makes there (and closes when it ends).

    ``encode`` makes the request body of a batch; ``decode_rejected`` reads how many spans a
    2xx response says the server rejected (OTLP's partial success)."""

    def __init__(
        self,
        connect: Callable[[], httpx.Client],
        url: str,
        encode: Callable[[list[Span]], bytes],
        decode_rejected: Callable[[bytes], tuple[int, str]],
        *,
        headers: Mapping[str, str],
        max_batch: int,
        max_buffer: int,
        flush_interval: float,
        retry_window: float,
    ) -> None:
        self.url = url
        self.sent = 0
        self.dropped = 0
        #: Requests that met a retryable failure and were (or were to be) tried again.
        self.retried = 0
        self.error: str | None = None
        self._connect = connect
        self._encode = encode
        self._decode_rejected = decode_rejected
        self._headers = {"Content-Type": "application/x-protobuf", **headers}
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._flush_interval = flush_interval
        self._retry_window = retry_window
        self._spans: deque[Span] = deque()
        self._in_flight = 0
        self._ready = threading.Condition(threading.Lock())
        self._closing = False
        self._abandoned = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracebus-otlp", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        """Spans taken and not yet sent or dropped."""
        with self._ready:
            return len(self._spans) + self._in_flight

    def offer(self, spans: list[Span]) -> None:
        """Buffer ``spans`` for sending, or drop (and count) what does not fit; never waits
        on the network."""
        with self._ready:
            room = self._max_buffer - len(self._spans) - self._in_flight
            if len(spans) > room:
                self._drop(len(spans) - max(room, 0), f"fell {self._max_buffer} spans behind")
                spans = spans[: max(room, 0)]
            self._spans.extend(spans)
            if len(self._spans) >= self._max_batch:
                self._ready.notify()

    def close(self) -> None:
        """Send what is buffered, then end the thread (``done`` is set then)."""
        with self._ready:
            self._closing = True
            self._ready.notify()

    def abandon(self) -> None:
        """Stop now: what is not sent yet is counted as dropped."""
        with self._ready:
            if self.done.is_set():
                return
            self._closing = True
            self._abandoned.set()
            self._drop(len(self._spans) + self._in_flight, "the run closed before they were sent")
            self._spans.clear()
            self._in_flight = 0
            self._ready.notify()

    def _run(self) -> None:
        client = self._connect()
        try:
            while True:
                with self._ready:
                    if not self._closing and len(self._spans) < self._max_batch:
                        self._ready.wait(self._flush_interval)
                    if self._abandoned.is_set() or (self._closing and not self._spans):
                        return
                    batch = [
                        self._spans.popleft() for _ in range(min(self._max_batch, len(self._spans)))
                    ]
                    self._in_flight = len(batch)
                if batch:
                    self._post(client, batch)
        finally:
            client.close()
            self.done.set()

    def _post(self, client: httpx.Client, batch: list[Span]) -> None:
        body = self._encode(batch)
        deadline = time.monotonic() + self._retry_window
        backoff = FIRST_BACKOFF
        while True:
            wait = backoff
            try:
                response = client.post(self.url, content=body, headers=self._headers)
            except Exception as exc:  # httpx.TransportError and what the socket may raise
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    rejected, message = self._decode_rejected(response.content)
                    self._settle(len(batch) - rejected, rejected, message)
                    return
                problem = f"HTTP {response.status_code} from {self.url}"
                if response.status_code not in RETRYABLE_STATUS:
                    self._settle(0, len(batch), problem)
                    return
                wait = _retry_after(response.headers.get("Retry-After"), backoff)
            with self._ready:
                self.retried += 1
            if time.monotonic() + wait > deadline:
                self._settle(0, len(batch), f"{problem} (gave up after {self._retry_window:g}s)")
                return
            if self._abandoned.wait(wait):
                return  # counted by abandon()
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _settle(self, sent: int, dropped: int, problem: str) -> None:
        with self._ready:
            if self._abandoned.is_set():
                return
            self.sent += sent
            self._in_flight = 0
            if dropped:
                self._drop(dropped, problem)

    def _drop(self, count: int, problem: str) -> None:
        if count <= 0:
            return
        self.dropped += count
        if self.error is None:
            self.error = problem


def _retry_after(header: str | None, default: float) -> float:
    """The wait a ``Retry-After`` header asks for (seconds, or an HTTP date), capped at
    MAX_BACKOFF; ``default`` without one."""
    if not header:
        return default
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_BACKOFF)
