"""One producer's events of one run, published to JetStream in batches with async acks.

Events are numbered 1, 2, 3... (``seq``) and gathered into messages of up to ``max_batch``
events. Every message carries ``Nats-Msg-Id: <run_id>:<producer>:<first seq>`` and stays in
the buffer, as the very bytes sent, until JetStream acknowledges it: a message resent after
a timeout or a lost connection is the same message, which the server's duplicate window
drops if it had stored it already (and the collector's writer drops if the window passed).

Nothing is lost silently: what is not acknowledged when the publisher gives up or closes is
counted and reported by ``aclose()``.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, NamedTuple

import anyio
import anyio.lowlevel
import nats.errors
from anyio.abc import TaskGroup
from nats.aio.client import Client
from nats.aio.msg import Msg

from .._events import Event
from .._exceptions import (
    BusClosedError,
    DeliveryError,
    QueueFullError,
    ServiceUnavailableError,
)
from .._layout import validate_id
from ._connection import ensure_stream, open_connection
from ._payload import encode_events, message_id
from ._settings import NatsSettings

log = logging.getLogger("tracebus.nats")

DEFAULT_MAX_BATCH = 2_000
DEFAULT_MAX_BUFFER = 50_000
DEFAULT_ACK_TIMEOUT = 5.0
DEFAULT_RECONNECT_TIMEOUT = 30.0
DEFAULT_CLOSE_TIMEOUT = 30.0
#: Room left in a message for its headers and the protocol line.
_HEADER_ROOM = 1_024
_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


class PublisherStatistics(NamedTuple):
    """A publisher's counters, in events unless the name says messages."""

    sent: int  # accepted by send()/send_nowait()
    acknowledged: int  # stored by JetStream
    buffered: int  # accepted, not yet acknowledged
    dropped: int  # refused while the buffer was full, under overflow="drop"
    rejected: int  # refused by JetStream (e.g. an event larger than a message may be)
    undelivered: int  # given up on: JetStream did not acknowledge them in time
    messages_published: int
    messages_resent: int
    messages_duplicate: int  # acknowledged as already stored (a resend that had arrived)


@dataclass(slots=True, eq=False)
class _Message:
    index: int
    first_seq: int
    last_seq: int
    msg_id: str
    body: bytes
    sent_at: float | None = None  # None: to be sent (again)
    settled: bool = False

    @property
    def events(self) -> int:
        return self.last_seq - self.first_seq + 1


class JetStreamPublisher:
    """Publishes one producer's events of one run to ``tracebus.<workflow_id>.<run_id>``.

    ``async with JetStreamPublisher(...)`` connects and creates the stream if missing, then
    ``send(event)`` numbers and buffers events (waiting while ``max_buffer`` events are
    unacknowledged, or dropping them under ``overflow="drop"``). The connection is retried
    for as long as acknowledgements keep coming; after ``reconnect_timeout`` seconds without
    one, the publisher gives up. Leaving waits up to ``close_timeout`` seconds for the rest.

    Raises BackendError off asyncio and ServiceUnavailableError when NATS or JetStream cannot
    be reached on entering; DeliveryError on leaving when any event was not stored.
    """

    def __init__(
        self,
        settings: NatsSettings,
        workflow_id: str,
        run_id: str,
        producer: str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        overflow: Literal["block", "drop", "raise"] = "block",
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        validate_id(workflow_id, "workflow_id")
        validate_id(run_id, "run_id")
        validate_id(producer, "producer")
        if max_batch < 1 or max_buffer < max_batch:
            raise ValueError("max_batch must be at least 1 and max_buffer at least max_batch")
        if overflow not in ("block", "drop", "raise"):
            raise ValueError(f"overflow must be 'block', 'drop' or 'raise', got {overflow!r}")
        self.settings = settings
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.producer = producer
        self.subject = settings.stream.subject(workflow_id, run_id)
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._overflow = overflow
        self._ack_timeout = ack_timeout
        self._reconnect_timeout = reconnect_timeout
        self._close_timeout = close_timeout
        self._client: Client | None = None
        self._task_group: TaskGroup | None = None
        self._inbox = ""
        self._max_body = 0
        self._pending: list[Event] = []  # numbered, not yet in a message
        self._unacked: deque[_Message] = deque()
        self._by_index: dict[int, _Message] = {}
        self._next_index = 0
        self._seq = 0
        self._acked_seq = 0
        self._buffered = 0
        self._connected = False
        self._open = False
        self._closing = False
        self._gave_up: str | None = None
        self._retry_at: float | None = None
        self._failures = 0
        self._last_progress = 0.0
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._rejected_reason = ""
        self._stats = dict.fromkeys(
            ("sent", "acknowledged", "dropped", "rejected", "undelivered", "published"), 0
        )
        self._stats.update(resent=0, duplicate=0)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> JetStreamPublisher:
        client = await open_connection(
            self.settings, on_disconnect=self._disconnected, on_reconnect=self._reconnected
        )
        try:
            await ensure_stream(client.jetstream(), self.settings.stream)
            self._inbox = client.new_inbox()
            await client.subscribe(f"{self._inbox}.*", cb=self._on_reply)
            self._max_body = client.max_payload - _HEADER_ROOM
            self._client = client
            self._connected = self._open = True
            self._last_progress = anyio.current_time()
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._task_group.start_soon(self._pump)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Publish what is buffered, wait up to ``close_timeout`` for its acknowledgements,
        disconnect.

        Raises DeliveryError when any event was dropped, rejected, or not acknowledged.
        """
        if not self._open:
            return
        self._open = False
        self._closing = True
        self._wake.set()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self._close_timeout):
                while self._buffered and self._gave_up is None:
                    await self._wait_progress()
            if self._buffered and self._gave_up is None:
                self._give_up(f"closing took longer than close_timeout ({self._close_timeout:g}s)")
        assert self._task_group is not None and self._client is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self._client.close()
        self._raise_for_losses()

    def _raise_for_losses(self) -> None:
        stats = self._stats
        undelivered = stats["undelivered"] + stats["dropped"]
        if undelivered or stats["rejected"]:
            reasons = []
            if stats["dropped"]:
                reasons.append(f"{stats['dropped']} dropped while the buffer was full")
            if self._gave_up is not None and stats["undelivered"]:
                reasons.append(self._gave_up)
            if stats["rejected"]:
                reasons.append(f"JetStream refused some: {self._rejected_reason}")
            raise DeliveryError(undelivered, stats["rejected"], "; ".join(reasons))

    # -- producing -------------------------------------------------------------------------

    def send_nowait(self, event: Event) -> None:
        """Number the event and buffer it; never blocks.

        Raises BusClosedError once closing, QueueFullError when the buffer is full under
        ``overflow="raise"`` (``"block"`` also raises here: use ``send``).
        """
        if not self._open:
            raise BusClosedError("the NATS publisher is closed; the event was not accepted")
        if self._buffered >= self._max_buffer:
            if self._overflow == "drop":
                self._stats["dropped"] += 1
                return
            raise QueueFullError(
                f"the NATS publisher's buffer is full ({self._max_buffer} unacknowledged "
                "events); await send() to wait for room"
            )
        self._accept(event)

    async def send(self, event: Event) -> None:
        """Number the event and buffer it, waiting while the buffer is full (under
        ``overflow="block"``). Raises BusClosedError once closing."""
        if self._overflow == "block":
            while self._buffered >= self._max_buffer and self._open:
                await self._wait_progress()
        self.send_nowait(event)

    def _accept(self, event: Event) -> None:
        if self._gave_up is not None:
            self._stats["undelivered"] += 1
            return
        if not self._buffered:
            self._last_progress = anyio.current_time()  # the give-up clock starts now
        self._seq += 1
        event.seq = self._seq
        event.producer = self.producer
        self._pending.append(event)
        self._buffered += 1
        self._stats["sent"] += 1
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every event sent so far is acknowledged by JetStream.

        Raises ServiceUnavailableError if the publisher gave up before that.
        """
        target = self._seq
        while self._acked_seq < target and self._gave_up is None:
            self._wake.set()
            await self._wait_progress()
        if self._gave_up is not None and self._acked_seq < target:
            raise ServiceUnavailableError(f"NATS publisher gave up: {self._gave_up}")

    async def _wait_progress(self) -> None:
        await self._progress.wait()

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    def statistics(self) -> PublisherStatistics:
        stats = self._stats
        return PublisherStatistics(
            sent=stats["sent"],
            acknowledged=stats["acknowledged"],
            buffered=self._buffered,
            dropped=stats["dropped"],
            rejected=stats["rejected"],
            undelivered=stats["undelivered"],
            messages_published=stats["published"],
            messages_resent=stats["resent"],
            messages_duplicate=stats["duplicate"],
        )

    # -- the pump: messages out, timeouts ------------------------------------------------

    async def _pump(self) -> None:
        while True:
            self._wake = anyio.Event()
            now = anyio.current_time()
            if self._connected and (self._retry_at is None or now >= self._retry_at):
                self._retry_at = None
                await self._publish_due(now)
            deadline = self._check_timeouts(anyio.current_time())
            if self._gave_up is not None:
                return
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._wake.wait()

    async def _publish_due(self, now: float) -> None:
        for message in list(self._unacked):
            if message.sent_at is None and not message.settled:
                if not await self._publish(message, resend=True):
                    return
        while self._pending:
            chunk = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            for message in self._messages_of(chunk):
                self._unacked.append(message)
                self._by_index[message.index] = message
                if self._connected and not await self._publish(message, resend=False):
                    return
            await anyio.lowlevel.checkpoint()

    def _messages_of(self, events: list[Event]) -> list[_Message]:
        body = encode_events(events)
        if len(body) <= self._max_body:
            index = self._next_index
            self._next_index += 1
            first, last = events[0].seq, events[-1].seq
            return [
                _Message(index, first, last, message_id(self.run_id, self.producer, first), body)
            ]
        if len(events) == 1:
            self._reject(1, f"an event of {len(body)} bytes is larger than a message may be")
            return []
        half = len(events) // 2
        return self._messages_of(events[:half]) + self._messages_of(events[half:])

    async def _publish(self, message: _Message, *, resend: bool) -> bool:
        assert self._client is not None
        try:
            await self._client.publish(
                self.subject,
                message.body,
                reply=f"{self._inbox}.{message.index}",
                headers={"Nats-Msg-Id": message.msg_id},
            )
        except (nats.errors.Error, OSError) as exc:
            log.debug("publish of %s failed: %s", message.msg_id, exc)
            self._schedule_retry()
            return False
        message.sent_at = anyio.current_time()
        self._stats["resent" if resend else "published"] += 1
        return True

    def _check_timeouts(self, now: float) -> float:
        """Resend after an ack timeout, give up after ``reconnect_timeout`` without progress;
        return when to look again."""
        deadline = now + self._ack_timeout
        if not self._unacked and not self._pending:
            self._last_progress = now
            return now + 3600.0
        if now - self._last_progress >= self._reconnect_timeout:
            self._give_up(
                f"no acknowledgement from JetStream for {self._reconnect_timeout:g}s "
                "(reconnect_timeout)"
            )
            return now
        head = next((m for m in self._unacked if not m.settled), None)
        if head is not None and head.sent_at is not None:
            if now - head.sent_at >= self._ack_timeout:
                self._resend_from(head)
                self._wake.set()
            else:
                deadline = head.sent_at + self._ack_timeout
        if self._retry_at is not None:
            deadline = min(deadline, self._retry_at)
        return min(deadline, self._last_progress + self._reconnect_timeout)

    def _resend_from(self, first: _Message) -> None:
        """Mark ``first`` and every later unsettled message for sending again, in order, so
        the stream keeps each producer's messages in order whenever it can."""
        marking = False
        for message in self._unacked:
            marking = marking or message is first
            if marking and not message.settled:
                message.sent_at = None

    def _schedule_retry(self) -> None:
        delay = _RETRY_DELAYS[min(self._failures, len(_RETRY_DELAYS) - 1)]
        self._failures += 1
        self._retry_at = anyio.current_time() + delay

    def _give_up(self, reason: str) -> None:
        self._gave_up = reason
        lost = self._buffered
        self._stats["undelivered"] += lost
        self._buffered = 0
        self._pending.clear()
        self._unacked.clear()
        self._by_index.clear()
        log.error("NATS publisher for run %s gave up: %s (%d events)", self.run_id, reason, lost)
        self._signal_progress()
        self._wake.set()

    def _reject(self, events: int, reason: str) -> None:
        self._stats["rejected"] += events
        self._buffered -= events
        self._rejected_reason = self._rejected_reason or reason

    # -- callbacks from nats-py -------------------------------------------------------------

    async def _disconnected(self) -> None:
        self._connected = False

    async def _reconnected(self) -> None:
        self._connected = True
        self._failures = 0
        head = next((m for m in self._unacked if not m.settled), None)
        if head is not None:
            self._resend_from(head)
        self._wake.set()

    async def _on_reply(self, msg: Msg) -> None:
        try:
            index = int(msg.subject.rsplit(".", 1)[1])
        except ValueError:
            return
        message = self._by_index.get(index)
        if message is None or message.settled:
            return
        if msg.headers and msg.headers.get("Status") == "503":  # no stream took it (yet)
            self._transient_failure(message, "no responders")
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            self._transient_failure(message, "an unreadable acknowledgement")
            return
        if not isinstance(reply, dict):
            self._transient_failure(message, "an unreadable acknowledgement")
            return
        error = reply.get("error")
        if isinstance(error, dict):
            description = str(error.get("description", error))
            if error.get("code") == 400:
                self._settle(message, rejected=f"{description} (message {message.msg_id})")
            else:
                self._transient_failure(message, description)
            return
        if reply.get("duplicate"):
            self._stats["duplicate"] += 1
        self._settle(message)

    def _transient_failure(self, message: _Message, reason: str) -> None:
        log.debug("JetStream did not store %s: %s; retrying", message.msg_id, reason)
        self._resend_from(message)
        self._schedule_retry()
        self._wake.set()

    def _settle(self, message: _Message, rejected: str | None = None) -> None:
        message.settled = True
        del self._by_index[message.index]
        if rejected is None:
            self._stats["acknowledged"] += message.events
            self._buffered -= message.events
        else:
            self._reject(message.events, rejected)
        unacked = self._unacked
        while unacked and unacked[0].settled:
            self._acked_seq = unacked.popleft().last_seq
        self._failures = 0
        self._last_progress = anyio.current_time()
        self._signal_progress()
