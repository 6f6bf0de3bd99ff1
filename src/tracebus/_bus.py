"""EventBus: the bounded queue (``_queue``), its single writer (``_writer``) and the
subscribers, behind one async context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import NamedTuple

import anyio
from anyio.abc import TaskGroup

from ._events import Event
from ._exceptions import CloseTimeoutError
from ._queue import EventQueue, Overflow
from ._sinks import Sink
from ._stamping import Stamper
from ._writer import Subscription, Writer

DEFAULT_CAPACITY = 10_000
DEFAULT_MAX_BATCH = 4_096
DEFAULT_CLOSE_TIMEOUT = 30.0


class BusStatistics(NamedTuple):
    """Counters of a bus, read at one moment."""

    emitted: int
    written: int
    dropped: int
    queued: int
    batches: int
    subscribers: int
    subscriber_dropped: int
    #: Events the writer left out as already written (resent by a remote producer).
    duplicates: int = 0


class EventBus:
    """Producers emit typed events onto a bounded queue; one writer task drains it in batches
    into the sinks.

    Use it as an async context manager; leaving the block closes the bus (drains and closes
    the sinks). The writer stamps ``seq`` and ``timestamp`` on events that lack them and
    leaves out a remote producer's resends (see ``stamper``).
    ``overflow`` decides what a full queue does: ``"block"`` (default) makes ``emit`` and
    ``emit_from_thread`` wait and ``emit_nowait`` raise QueueFullError; ``"drop"`` makes all
    three drop and count the event instead (lifecycle events, ``workflow_*`` and
    ``node_failure``, are never dropped). ``"raise"`` is the earlier spelling of ``"block"``.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        *,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Overflow = "block",
        max_batch: int = DEFAULT_MAX_BATCH,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        detached: Sequence[Sink] = (),
    ) -> None:
        self._queue = EventQueue(capacity, overflow)
        # detached sinks (a run's user sinks) may fall as far behind as the queue holds, and
        # get half the close deadline to catch up; the rest is the run's own files'
        self._writer = Writer(
            self._queue,
            sinks,
            max_batch=max_batch,
            detached=detached,
            detached_capacity=capacity,
            detached_close_timeout=close_timeout / 2,
        )
        self._close_timeout = close_timeout
        # The observers' calls go straight to the queue's offer and put_blocking (one call
        # fewer per event); the methods below document them.
        self.offer = self._queue.offer  # type: ignore[method-assign]
        self.emit_from_thread = self._queue.put_blocking  # type: ignore[method-assign]
        self._task_group: TaskGroup | None = None
        self._entered = False
        self._closing = False

    async def __aenter__(self) -> EventBus:
        if self._entered or self._closing:
            raise RuntimeError("an EventBus can be entered only once")
        self._entered = True
        self._queue.bind()
        await self._writer.open()
        # Not task_group.start(): a start cancelled after the writer began its shielded drain
        # would wait for that drain to end, and nothing would ever close the queue.
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._writer.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            # The writer has finished: the block's own exception is not the task group's.
            await self._task_group.__aexit__(None, None, None)
        return None

    async def emit(self, event: Event) -> None:
        """Enqueue ``event``, waiting while the queue is full (backpressure; under ``drop``
        a non-lifecycle event is dropped instead).

        Raises BusClosedError after close. Suspends only when the queue is full.
        """
        if not self._queue.offer(event):
            await self._queue.put(event)

    def offer(self, event: Event) -> bool:
        """Enqueue ``event`` if the queue has room, and say whether it did; never waits, never
        drops. Safe from any thread. Raises BusClosedError after close."""
        return self._queue.offer(event)

    def emit_nowait(self, event: Event) -> None:
        """Enqueue ``event`` without ever blocking; safe from any thread.

        Raises QueueFullError when full under ``overflow="block"``; BusClosedError after close.
        """
        self._queue.put_nowait(event)

    def emit_droppable(self, event: Event) -> None:
        """Enqueue ``event`` from any thread if the queue has room, else drop and count it
        (whatever the overflow policy); ignored after close. Never waits, never raises."""
        self._queue.put_droppable(event)

    def emit_from_thread(self, event: Event, *, timeout: float | None = None) -> None:
        """Enqueue from a worker thread, blocking that thread while the queue is full (under
        ``drop`` a non-lifecycle event is dropped instead).

        Raises QueueFullError if still full after ``timeout`` seconds; BusClosedError after
        close. Never call it from the event loop's own thread: use ``emit`` there.
        """
        self._queue.put_blocking(event, timeout)

    def subscribe(self, max_buffer: int = 1_000) -> AsyncIterator[Event]:
        """Every event emitted from now on, as the writer writes it, until the bus closes.

        A subscriber that falls more than ``max_buffer`` events behind misses the surplus,
        which is counted in ``statistics().subscriber_dropped``; it never stalls the writer.
        """
        return self._writer.subscribe(Subscription(max_buffer, self._queue.accepted))

    async def wait_drained(self) -> None:
        """Wait until every event accepted so far has been through the sinks."""
        await self._writer.wait_written(self._queue.accepted)

    def statistics(self) -> BusStatistics:
        writer, queue = self._writer, self._queue
        return BusStatistics(
            emitted=queue.accepted,
            written=writer.written,
            dropped=queue.dropped,
            queued=len(queue.items),
            batches=writer.batches,
            subscribers=len(writer.subscriptions),
            subscriber_dropped=writer.subscriber_dropped,
            duplicates=writer.duplicates,
        )

    @property
    def closed(self) -> bool:
        return self._queue.closed

    @property
    def taken(self) -> int:
        """Events the writer has taken from the queue so far: written, left out, lost, or in
        the batch it is making. Exact on the loop's thread."""
        return self._queue.taken

    @property
    def stamper(self) -> Stamper:
        """The writer's stamping: the last ``seq`` given, each producer's highest ``seq``."""
        return self._writer.stamper

    def sink_failures(self) -> dict[str, tuple[int, BaseException]]:
        """The sinks that failed so far: name -> (events lost, first error)."""
        return self._writer.failures

    async def aclose(self, last: Event | None = None) -> None:
        """Stop accepting events, let the writer drain, close the sinks. Idempotent.

        ``last`` (a run's terminal event) is queued in the same step as the close, whatever
        the room: an event a thread emits meanwhile is written before it or refused.

        Raises CloseTimeoutError if the writer could not drain within the bus's
        ``close_timeout``, and SinkError if a sink failed while running.
        """
        if self._closing:
            return
        self._closing = True
        self._writer.feeds_deadline = anyio.current_time() + self._close_timeout / 2
        self._queue.close(last)
        deadline = self._close_timeout
        with anyio.move_on_after(deadline):
            await self._writer.finished.wait()
        if not self._writer.finished.is_set():
            unwritten = len(self._queue.items) + self._writer.in_progress
            self._writer.cancel()
            await self._writer.finished.wait()
            raise CloseTimeoutError(unwritten, deadline)
        self._writer.raise_failures()
