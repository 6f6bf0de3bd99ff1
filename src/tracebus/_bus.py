"""The bounded event queue and the bus around it.

The hot path is a ``deque.append`` plus a length check: no await, no lock, no syscall. The
writer is woken only when it sleeps, once per idle period; a producer only waits (or blocks
its thread) when the queue is full. ``deque.append``/``popleft`` are atomic, so worker
threads push onto the same queue as the event loop, and queue order is emit order.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Literal, NamedTuple

import anyio
from anyio.abc import TaskGroup

from ._events import LIFECYCLE_TYPES, Event
from ._exceptions import BusClosedError, CloseTimeoutError, QueueFullError
from ._loop import threadsafe_caller
from ._stamping import Stamper
from ._writer import Sink, Subscription, Writer

#: What a full queue does: ``"block"`` makes producers wait (``emit_nowait``, which never
#: waits, raises QueueFullError), ``"drop"`` drops and counts non-lifecycle events.
#: ``"raise"`` is the earlier spelling of ``"block"``, still accepted.
Overflow = Literal["block", "drop", "raise"]

DEFAULT_CAPACITY = 10_000
DEFAULT_MAX_BATCH = 4_096
DEFAULT_CLOSE_TIMEOUT = 30.0
RESUME_ROOM = 1_024


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


class EventQueue:
    """A bounded FIFO shared by async producers, producer threads and the single writer."""

    def __init__(self, capacity: int, overflow: Overflow) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if overflow not in ("block", "drop", "raise"):
            raise ValueError(f"overflow must be 'block' or 'drop', got {overflow!r}")
        self.capacity = capacity
        self.overflow: Literal["block", "drop"] = "drop" if overflow == "drop" else "block"
        # producers waiting for room are let in once the queue is down to this (see take)
        self._resume_at = capacity - min(RESUME_ROOM, max(1, capacity // 4))
        self.items: deque[Event] = deque()
        self.closed = True  # until the writer is running
        self._opened = False
        self.taken = 0
        self.dropped = 0
        self._drop_lock = threading.Lock()
        self._loop_thread = 0
        self._call_soon: Callable[[Callable[[], object]], object] | None = None
        self._idle = False
        self._wake_pending = False
        self._wakeup = anyio.Event()
        self._space = anyio.Event()
        self._async_waiters = 0
        self._thread_waiters = 0
        self._thread_space = threading.Condition()
        self._pid = os.getpid()
        self._forked_from: int | None = None

    @property
    def accepted(self) -> int:
        """Events accepted so far. Exact on the loop's thread (``take`` runs there); a
        counter per append would need a lock, as ``+=`` is not atomic across threads."""
        return self.taken + len(self.items)

    def bind(self) -> None:
        """Remember the event loop the writer runs on (called from that loop)."""
        self._loop_thread = threading.get_ident()
        self._opened = True
        self.closed = False
        self._call_soon = threadsafe_caller()
        _open_queues.add(self)

    def _forked(self) -> None:
        """In a forked child: refuse every event, for the writer is the parent's."""
        self._forked_from = self._pid
        self.closed = True
        self._call_soon = None
        self._thread_space = threading.Condition()  # a parent's thread may have held it

    def put_nowait(self, event: Event) -> None:
        """Enqueue without blocking; raise (or drop and count) when full."""
        if self.closed:
            raise self._refusal()
        if len(self.items) >= self.capacity:
            if self.overflow == "block":
                raise QueueFullError(
                    f"event queue full ({self.capacity} events); "
                    "await emit() to wait for room, or use overflow='drop'"
                )
            if self._dropped(event):
                return
        self._append(event)

    def _dropped(self, event: Event) -> bool:
        """Under ``drop``, count and drop ``event`` unless it is a lifecycle event."""
        if self.overflow != "drop" or isinstance(event, LIFECYCLE_TYPES):
            return False
        with self._drop_lock:  # `+=` is not atomic across threads; drops are rare
            self.dropped += 1
        return True

    def put_droppable(self, event: Event) -> None:
        """Enqueue if there is room, else drop and count ``event`` whatever the policy;
        ignore it once the queue is closed. Never waits, never raises: for what must not hold
        up its thread (a log record)."""
        if self.closed:
            return
        if len(self.items) >= self.capacity:
            with self._drop_lock:
                self.dropped += 1
            return
        self._append(event)

    def offer(self, event: Event) -> bool:
        """Enqueue if there is room and say so; raise BusClosedError when closed."""
        if self.closed:
            raise self._refusal()
        if len(self.items) >= self.capacity:
            return False
        self._append(event)
        return True

    async def put(self, event: Event) -> None:
        """Enqueue, waiting while the queue is full (under ``drop``, only a lifecycle event
        waits). Suspends only when it must wait."""
        while len(self.items) >= self.capacity and not self.closed:
            if self._dropped(event):
                return
            space = self._space
            self._async_waiters += 1
            try:
                await space.wait()
            finally:
                self._async_waiters -= 1
        if self.closed:
            raise self._refusal()
        self._append(event)

    def put_blocking(self, event: Event, timeout: float | None) -> None:
        """Enqueue from a thread other than the loop's, blocking it while the queue is full
        (under ``drop``, only a lifecycle event waits)."""
        if len(self.items) >= self.capacity and not self.closed:
            if self._dropped(event):
                return
            with self._thread_space:
                self._thread_waiters += 1
                try:
                    if not self._thread_space.wait_for(
                        lambda: len(self.items) < self.capacity or self.closed, timeout
                    ):
                        raise QueueFullError(
                            f"event queue still full ({self.capacity} events) after {timeout}s"
                        )
                finally:
                    self._thread_waiters -= 1
        if self.closed:
            raise self._refusal()
        self._append(event)

    def _refusal(self) -> BusClosedError:
        if self._forked_from is not None:
            return forked_refusal(self._forked_from)
        if not self._opened:
            return BusClosedError(
                "the bus is not open yet: enter it first (`async with ...`); "
                "the event was not accepted"
            )
        return BusClosedError("the bus is closed; the event was not accepted")

    def _append(self, event: Event) -> None:
        self.items.append(event)
        # Order matters: append first, then look at _idle (the writer sets _idle, then looks
        # at the queue), so either we wake it or it sees the event.
        if self._idle:
            if threading.get_ident() == self._loop_thread:
                self._idle = False  # one wake-up is enough: spare the producers that follow
                self._wakeup.set()
            elif not self._wake_pending and self._call_soon is not None:
                self._wake_pending = True
                try:
                    self._call_soon(self._wakeup.set)
                except RuntimeError:  # the loop is gone; close() reports what is queued
                    pass

    def take(self, limit: int) -> list[Event]:
        """Pop up to ``limit`` events (writer only). Producers waiting for room are let in
        once RESUME_ROOM places (a quarter of a small queue) are free: the writer takes a
        step at a time, and waking every waiting producer for each step's few free places
        would cost more than the steps."""
        items = self.items
        batch = [items.popleft() for _ in range(min(limit, len(items)))]
        if batch:
            self.taken += len(batch)
            if len(items) <= self._resume_at:
                self._release_waiters()
        return batch

    async def wait_for_events(self) -> None:
        """Sleep until an event is queued or the queue is closed (writer only)."""
        self._wakeup = anyio.Event()
        self._idle = True
        try:
            if not self.items and not self.closed:
                await self._wakeup.wait()
        finally:
            self._idle = False
            self._wake_pending = False

    def close(self) -> None:
        """Refuse new events; wake the writer and every waiting producer."""
        self.closed = True
        self._wakeup.set()
        self._release_waiters()

    def _release_waiters(self) -> None:
        if self._async_waiters:
            self._space.set()
            self._space = anyio.Event()
        if self._thread_waiters:
            with self._thread_space:
                self._thread_space.notify_all()


def forked_refusal(parent: int) -> BusClosedError:
    """What a forked child is told when it emits to an observer of its parent's."""
    return BusClosedError(
        f"this observer belongs to process {parent}, and this process is a forked child of "
        "it: nothing it emits reaches that run (open an observer of its own in the child); "
        "the event was not accepted"
    )


_open_queues: weakref.WeakSet[EventQueue] = weakref.WeakSet()


def _close_in_child() -> None:
    for queue in list(_open_queues):
        queue._forked()
    _open_queues.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


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

    async def aclose(self) -> None:
        """Stop accepting events, let the writer drain, close the sinks. Idempotent.

        Raises CloseTimeoutError if the writer could not drain within the bus's
        ``close_timeout``, and SinkError if a sink failed while running.
        """
        if self._closing:
            return
        self._closing = True
        self._writer.feeds_deadline = anyio.current_time() + self._close_timeout / 2
        self._queue.close()
        deadline = self._close_timeout
        with anyio.move_on_after(deadline):
            await self._writer.finished.wait()
        if not self._writer.finished.is_set():
            unwritten = len(self._queue.items) + self._writer.in_progress
            self._writer.cancel()
            await self._writer.finished.wait()
            raise CloseTimeoutError(unwritten, deadline)
        self._writer.raise_failures()
