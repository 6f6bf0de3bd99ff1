"""Getting one producer's events to the collector: batches, acknowledgements, reconnects.

Events wait on a bounded queue, as in process. One sender task takes them in batches,
numbers them 1, 2, 3... for this producer, sends each batch as one message and keeps it
until the service acknowledges it, that is until its events are written. When the connection
drops, the sender reconnects and sends every unacknowledged batch again; the run's writer
leaves out what it had written already. The unacknowledged events are bounded
(``resend_buffer``): past that the sender waits for acknowledgements, the queue fills, and
producers wait (or drop, under ``overflow="drop"``). A service that could not write a batch
(or cannot take it now: an ``ErrorCode`` that ``defers``) closes the connection without
refusing it: the sender waits a little, reconnects and sends it again. If the service stays
away, or keeps answering so, longer than ``reconnect_timeout`` without acknowledging
anything, or refuses the producer outright, the delivery gives up: what it holds is counted
as undelivered and reported at close.

The link (``Link``, see ``_link``) is all that knows the transport: it is handed each batch
sealed (its id, first seq, count and encoded body) and only carries it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Unpack, cast

import anyio
from anyio.abc import TaskStatus

from .._events import AnyEvent, Event
from .._exceptions import (
    DeliveryError,
    ProtocolError,
    ServiceError,
    ServiceUnavailableError,
)
from .._queue import EventQueue
from ._codes import ErrorCode, is_transient
from ._limits import MAX_RESEND_BUFFER
from ._link import Link, SealedBatch
from ._options import DeliveryOptions
from ._protocol import Ack, Batch, ErrorReply, Hello, encode

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 1.0


#: Opens a link to the collector, saying this hello.
LinkOpener = Callable[[Hello], Awaitable[Link]]


class RemoteStatistics(NamedTuple):
    """Counters of a remote observer, read at one moment."""

    emitted: int
    delivered: int
    rejected: int
    undelivered: int
    dropped: int
    queued: int
    unacknowledged: int
    batches: int
    reconnects: int


class Delivery:
    """Sends one run's events from one producer; see the module's docstring."""

    def __init__(
        self,
        open_link: LinkOpener,
        hello: Hello,
        workflow_id: str,
        run_id: str,
        *,
        probe: bool,
        **options: Unpack[DeliveryOptions],
    ) -> None:
        max_batch, resend_buffer = options["max_batch"], options["resend_buffer"]
        if max_batch < 1 or resend_buffer < 1:
            raise ValueError("max_batch and resend_buffer must be at least 1")
        if resend_buffer > MAX_RESEND_BUFFER:
            raise ValueError(
                f"resend_buffer must be at most {MAX_RESEND_BUFFER:,} (the collector refuses a "
                f"seq further than that past what it has), got {resend_buffer}"
            )
        self.queue = EventQueue(options["capacity"], options["overflow"])
        self._open_link = open_link
        self._hello = hello
        self._workflow_id = workflow_id
        self._run_id = run_id
        self._max_batch = max_batch
        self._batch_limit = max_batch
        self._max_body = 0
        self._resend_buffer = resend_buffer
        self._reconnect_timeout = options["reconnect_timeout"]
        self.close_timeout = options["close_timeout"]
        self._unacked: deque[SealedBatch] = deque()
        self._unacked_events = 0
        self._next_id = 1
        self._next_seq = 1
        self._settled_id = 0
        self._changed = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self.delivered = 0
        self.rejected = 0
        self.undelivered = 0
        self.batches = 0
        self.reconnects = 0
        self.failure: ServiceError | ServiceUnavailableError | None = None
        self.first_refusal: ServiceError | None = None
        self.first_batch_refusal: ServiceError | None = None
        #: The last answer after which the service is to be tried again (it could not
        #: write, it is full or stopping): what close reports for what stayed unacknowledged.
        self.last_deferral: ServiceError | None = None
        self._deferred = False  # the last connection ended with such an answer
        self._backoff = _FIRST_BACKOFF
        self._trouble_since: float | None = None  # no acknowledgement since, while failing
        self._oversize: list[Event] = []
        self._abandoned_from = 2**63  # the first batch given up on, once the delivery gave up
        if probe:  # an empty batch, sent first: the service answers whether the run is open
            self._hold(self._seal([])[0])

    # -- life -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, then send until cancelled by ``aclose``.

        Raises ServiceUnavailableError or ServiceError, before ``started``, when the first
        connection fails.
        """
        self.queue.bind()
        link: Link | None = await self._connect()
        with anyio.CancelScope() as self._scope:
            task_status.started()
            while link is not None:
                await self._pump(link)
                link = None if self.failure is not None else await self._reconnect()
            await self._discard()

    async def aclose(self, deadline: float | None = None, last: Event | None = None) -> None:
        """Refuse new events (queueing ``last``, a run's terminal event, as the last one; see
        EventQueue.close), wait until ``deadline`` (default: ``close_timeout`` seconds from
        now) for everything to be settled, then stop.

        Raises DeliveryError when events were rejected, dropped or not delivered.
        """
        queue = self.queue
        queue.close(last)
        timeout = self.close_timeout
        if deadline is None:
            deadline = anyio.current_time() + timeout
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            await self.wait_settled(queue.accepted)
        if self._scope is not None:
            self._scope.cancel()
        undelivered = self.undelivered + self._unacked_events + len(queue.items) + queue.dropped
        if undelivered or self.rejected:
            raise DeliveryError(undelivered, self.rejected, self._reason(timeout))

    def _reason(self, timeout: float) -> str:
        reasons: list[str] = []
        if self.failure is not None:
            reasons.append(str(self.failure))
        if self.first_refusal is not None:
            reasons.append(f"first refusal: {self.first_refusal}")
        if self.queue.dropped:
            reasons.append(f"{self.queue.dropped} dropped while the queue was full")
        if self._unacked_events or self.queue.items:
            reasons.append(f"not all acknowledged within close_timeout ({timeout:g}s)")
            if self.last_deferral is not None:
                reasons.append(f"the collector's last answer: {self.last_deferral}")
        return "; ".join(reasons) or "unknown"

    async def wait_settled(self, count: int) -> None:
        """Wait until the first ``count`` events accepted are delivered, rejected or given up."""
        while self.delivered + self.rejected + self.undelivered < count:
            await self._wait_change()

    async def wait_batch(self, batch_id: int) -> None:
        """Wait until batch ``batch_id`` is settled. Raises the reason the delivery gave up
        (before or on that batch)."""
        while self._settled_id < batch_id:
            if self.failure is not None:
                raise self.failure
            await self._wait_change()
        if self.failure is not None and batch_id >= self._abandoned_from:
            raise self.failure

    def statistics(self) -> RemoteStatistics:
        queue = self.queue
        return RemoteStatistics(
            emitted=queue.accepted,
            delivered=self.delivered,
            rejected=self.rejected,
            undelivered=self.undelivered,
            dropped=queue.dropped,
            queued=len(queue.items),
            unacknowledged=self._unacked_events,
            batches=self.batches,
            reconnects=self.reconnects,
        )

    # -- connecting -------------------------------------------------------------------------

    async def _connect(self) -> Link:
        link = await self._open_link(self._hello)
        self._batch_limit = max(1, min(self._max_batch, link.max_batch_events))
        self._max_body = link.max_batch_bytes
        return link

    async def _reconnect(self) -> Link | None:
        now = anyio.current_time()
        if self._trouble_since is None:
            self._trouble_since = now
        deadline = self._trouble_since + self._reconnect_timeout
        last: ServiceError | ServiceUnavailableError | None = self.last_deferral
        if self._deferred:  # the service said "later": do not hammer it
            self._deferred = False
            if not await self._pause(deadline):
                self._give_up(
                    ServiceUnavailableError(
                        f"gave up after {self._reconnect_timeout:g}s without an "
                        f"acknowledgement: {last}"
                    )
                )
                return None
        while True:
            try:
                link = await self._connect()
            except ServiceUnavailableError as exc:
                last = exc
            except ServiceError as exc:
                if not is_transient(exc.code):
                    self._give_up(exc)
                    return None
                last = self.last_deferral = exc
            else:
                self.reconnects += 1
                if not self._unacked:
                    self._trouble_since = None
                return link
            if not await self._pause(deadline):
                self._give_up(
                    ServiceUnavailableError(
                        f"gave up reconnecting after {self._reconnect_timeout:g}s: {last}"
                    )
                )
                return None

    async def _pause(self, deadline: float) -> bool:
        """Sleep the current backoff, doubling it; False (without sleeping) when that would
        pass ``deadline``."""
        delay = self._backoff
        if anyio.current_time() + delay > deadline:
            return False
        await anyio.sleep(delay)
        self._backoff = min(delay * 2, _MAX_BACKOFF)
        return True

    def _give_up(self, reason: ServiceError | ServiceUnavailableError) -> None:
        self.failure = reason
        self._notify()

    # -- one connection -----------------------------------------------------------------------

    async def _pump(self, link: Link) -> None:
        """Resend what is unacknowledged, then send new batches, until the link breaks."""
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._receive, link, tasks.cancel_scope)
                try:
                    for sent in list(self._unacked):
                        await link.send(sent)
                    await self._send(link)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await link.aclose()

    async def _send(self, link: Link) -> None:
        queue = self.queue
        while True:
            room = self._resend_buffer - self._unacked_events
            if room <= 0:
                await self._wait_change()
                continue
            events = queue.take(min(room, self._batch_limit))
            if not events:
                if queue.closed:
                    await anyio.sleep_forever()
                await queue.wait_for_events()
                continue
            first, producer = self._next_seq, self._hello.producer
            for event in events:
                event.producer = producer
            self._number(events, first)
            sealed = self._seal(events)
            if self._oversize:  # refused here: the others take their seqs, leaving no gap
                events = [e for e in events if not any(e is big for big in self._oversize)]
                self._oversize.clear()
                self._number(events, first)
                sealed = self._seal(events)
            for sent in sealed:  # all held before any is sent: a broken send loses none
                self._hold(sent)
            for sent in sealed:
                await link.send(sent)

    def _number(self, events: Sequence[Event], first: int) -> None:
        seq = first
        for event in events:
            event.seq = seq
            seq += 1
        self._next_seq = seq

    def _seal(self, events: Sequence[Event]) -> list[SealedBatch]:
        batch = Batch(
            id=self._next_id,
            workflow_id=self._workflow_id,
            run_id=self._run_id,
            events=cast(list[AnyEvent], list(events)),
        )
        body = encode(batch)
        if len(body) <= self._max_body or not self._max_body:
            self._next_id += 1
            first = events[0].seq if events else 0
            return [SealedBatch(batch.id, first, len(events), body)]
        if len(events) == 1:
            self._oversize.append(events[0])
            self._refused(
                None,
                1,
                ServiceError(ErrorCode.FRAME_TOO_LARGE, "an event is larger than a frame may be"),
            )
            return []
        half = len(events) // 2
        return self._seal(events[:half]) + self._seal(events[half:])

    def _hold(self, sent: SealedBatch) -> None:
        self._unacked.append(sent)
        self._unacked_events += sent.count
        self.batches += 1

    async def _receive(self, link: Link, scope: anyio.CancelScope) -> None:
        try:
            while True:
                message = await link.receive()
                if isinstance(message, Ack):
                    self._settle(message.id, None)
                elif isinstance(message, ErrorReply):
                    if message.id is not None:
                        self._settle(message.id, message)
                    if message.fatal:
                        if not is_transient(message.code):
                            self._give_up(ServiceError(message.code, message.message))
                        else:
                            self._deferred = True
                            self.last_deferral = ServiceError(message.code, message.message)
                        break
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
            ProtocolError,
        ):
            pass
        scope.cancel()

    def _settle(self, upto: int, error: ErrorReply | None) -> None:
        unacked = self._unacked
        while unacked and unacked[0].id <= upto:
            sent = unacked.popleft()
            self._unacked_events -= sent.count
            if error is not None and sent.id == error.id:
                self._refused(sent.id, sent.count, ServiceError(error.code, error.message))
            else:
                self.delivered += sent.count
        self._settled_id = max(self._settled_id, upto)
        self._trouble_since = None
        self._backoff = _FIRST_BACKOFF
        self._notify()

    def _refused(self, batch_id: int | None, count: int, reason: ServiceError) -> None:
        self.rejected += count
        if self.first_refusal is None:
            self.first_refusal = reason
        if batch_id == 1:
            self.first_batch_refusal = reason
        self._notify()

    async def _discard(self) -> None:
        """Gave up: count what is held and whatever comes, so producers never wait on it."""
        self._abandoned_from = self._unacked[0].id if self._unacked else self._next_id
        self.undelivered += self._unacked_events
        self._unacked.clear()
        self._unacked_events = 0
        self._settled_id = self._next_id
        self._notify()
        queue = self.queue
        while True:
            events = queue.take(queue.capacity)
            if events:
                self.undelivered += len(events)
                self._notify()
                continue
            if queue.closed:
                await anyio.sleep_forever()
            await queue.wait_for_events()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
