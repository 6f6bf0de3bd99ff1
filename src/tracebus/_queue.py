"""The bounded event queue shared by producers (tasks and threads) and the one task that
drains it (a bus's writer, a remote observer's delivery).

The hot path is a ``deque.append`` plus a length check: no await, no lock, no syscall. The
consumer is woken only when it sleeps, once per idle period; a producer only waits (or blocks
its thread) when the queue is full. ``deque.append``/``popleft`` are atomic, so worker
threads push onto the same queue as the event loop, and queue order is emit order.

On a loop of its own, whose producers are threads (a sync observer's), the consumer pauses
between two batches while it keeps up (see ``pace``): each batch costs its thread a wake-up
and GIL hand-offs that the producer threads wait through, so fewer, larger batches cost them
less.

Closing races the producer threads, which take no lock: one may pass the "not closed" check
just before the close and append just after it. So a producer looks at ``closed`` again after
its append, and only then (a rare path) takes the close lock to settle its event: once closed,
the writer takes under that lock, and stops at the closer's last event (the run's terminal
one, see ``close``). An event still queued behind that last event, or after the writer's last
take, is taken back and refused (BusClosedError); any other was, or will be, taken in order.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio

from ._events import LIFECYCLE_TYPES, Event
from ._exceptions import BusClosedError, QueueFullError
from ._loop import on_private_loop, threadsafe_caller

#: What a full queue does: ``"block"`` makes producers wait (``emit_nowait``, which never
#: waits, raises QueueFullError), ``"drop"`` drops and counts non-lifecycle events.
#: ``"raise"`` is the earlier spelling of ``"block"``, still accepted.
Overflow = Literal["block", "drop", "raise"]

#: Producers waiting for room are let in once this many places are free (see EventQueue.take).
RESUME_ROOM = 1_024

#: The longest pause between two batches on a loop of its own (see EventQueue.pace).
THREAD_PACE = 0.005


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
        self._close_lock = threading.Lock()  # once closed: the writer's takes, settle()
        self._last: Event | None = None  # the closer's last event, until the writer takes it
        self._ended = False  # the writer took its last event: what is still queued is refused
        self._loop_thread = 0
        self._call_soon: Callable[[Callable[[], object]], object] | None = None
        self._idle = False
        # closed or _idle: what a producer must look at after its append (one read for both)
        self._notice = True
        self._wake_pending = False
        self._pace = 0.0
        self._pacing = False
        self._paced_at = (0.0, 0)  # when the last pause ended, and ``accepted`` then
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
        self._notice = False
        self._call_soon = threadsafe_caller()
        self._pace = THREAD_PACE if on_private_loop() else 0.0
        _open_queues.add(self)

    def _forked(self) -> None:
        """In a forked child: refuse every event, for the writer is the parent's."""
        self._forked_from = self._pid
        self.closed = True
        self._notice = True
        self._ended = True
        self._close_lock = threading.Lock()
        self._call_soon = None
        self._thread_space = threading.Condition()  # a parent's thread may have held it

    def put_nowait(self, event: Event) -> None:
        """Enqueue without blocking; raise (or drop and count) when full."""
        if self.closed:
            raise self._refusal()
        if len(self.items) >= self.capacity:
            self.hurry()
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
            self.hurry()
            with self._drop_lock:
                self.dropped += 1
            return
        self.items.append(event)
        if self._notice:
            try:
                self._noticed(event)
            except BusClosedError:
                pass  # ignored, as it would have been had it come after the close

    def offer(self, event: Event) -> bool:
        """Enqueue if there is room and say so; raise BusClosedError when closed."""
        if self.closed:
            raise self._refusal()
        items = self.items
        if len(items) >= self.capacity:
            return False
        # _append, inlined: this is every awaited call's path
        items.append(event)
        if self._notice:
            self._noticed(event)
        return True

    async def put(self, event: Event) -> None:
        """Enqueue, waiting while the queue is full (under ``drop``, only a lifecycle event
        waits). Suspends only when it must wait."""
        while len(self.items) >= self.capacity and not self.closed:
            self.hurry()
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

    def put_blocking(self, event: Event, timeout: float | None = None) -> None:
        """Enqueue from a thread other than the loop's, blocking it while the queue is full
        (under ``drop``, only a lifecycle event waits)."""
        items = self.items
        if len(items) < self.capacity and not self.closed:
            # _append, inlined: this is every call's path from a thread while there is room
            items.append(event)
            if self._notice:
                self._noticed(event)
            return
        if not self.closed:
            self.hurry()  # full: the writer's pause, if it pauses, is over
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
        if self._notice:
            self._noticed(event)

    def _noticed(self, event: Event) -> None:
        """After the append of ``event``, the queue was closed or its writer idle.

        Order matters: append first, then look at closed (see settle) and _idle (the writer
        sets _idle, then looks at the queue), so either we wake it or it sees the event."""
        if self.closed:
            self._settle(event)
        elif self._idle:
            self._wake()

    def _settle(self, event: Event) -> None:
        """The queue closed around a producer's append of ``event``: leave it if the writer
        takes it before the closer's last event, else take it back and raise BusClosedError.
        Runs on the producer's thread, after it saw ``closed`` following its append."""
        with self._close_lock:
            items, last = self.items, self._last
            queued = list(items)  # one C call: atomic under the GIL, unlike a Python loop
            before_last = True
            for index, other in enumerate(queued):
                if other is event:
                    if before_last and not self._ended:
                        return  # the writer takes it, in order
                    # the writer pops from the left under this lock, and producers append
                    # on the right: the index still holds
                    del items[index]
                    raise self._refusal()
                if other is last:
                    before_last = False
            # taken by the writer, in order (before the closer's last event)

    def _wake(self) -> None:
        """Wake the idle writer: once per idle period (the producers that follow are spared
        it), through the loop's thread-safe call from another thread."""
        if threading.get_ident() == self._loop_thread:
            self._idle = False
            self._notice = self.closed
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
        if self.closed:  # closed on this (the loop's) thread: stays so through this call
            batch = self._take_closed(limit)
        else:
            batch = [items.popleft() for _ in range(min(limit, len(items)))]
        if batch:
            self.taken += len(batch)
            if len(items) <= self._resume_at:
                self._release_waiters()
        return batch

    def _take_closed(self, limit: int) -> list[Event]:
        """``take`` once closed: under the close lock (see settle), up to the closer's last
        event, or until the queue is empty when the closer gave none."""
        with self._close_lock:
            if self._ended:
                return []
            items, last = self.items, self._last
            batch: list[Event] = []
            while items and len(batch) < limit:
                event = items.popleft()
                batch.append(event)
                if event is last:
                    self._ended = True
                    self._last = None
                    break
            if not items and last is None:
                self._ended = True
            return batch

    async def wait_for_events(self) -> None:
        """Sleep until an event is queued or the queue is closed (writer only)."""
        self._wakeup = anyio.Event()
        self._idle = True
        self._notice = True  # after _idle: a producer that sees it sees _idle
        try:
            if not self.items and not self.closed:
                await self._wakeup.wait()
        finally:
            self._idle = False
            self._notice = self.closed  # closed only on this thread: no race
            self._wake_pending = False

    async def pace(self) -> None:
        """Between two batches the writer kept up with (writer only): the loop's turn for
        its other tasks and, on a loop of its own, a pause of up to THREAD_PACE while the
        producer threads queue the next batch, short enough that at their last batch's rate
        they fill at most a quarter of the queue. Closing, a full queue and a flush end it
        (``hurry``)."""
        if not self._pace or self.closed:
            await anyio.lowlevel.checkpoint()
            return
        since, accepted_then = self._paced_at
        arrived = max(1, self.accepted - accepted_then)
        pause = min(self._pace, (anyio.current_time() - since) * self.capacity / (4 * arrived))
        self._wakeup = anyio.Event()
        self._pacing = True
        try:
            with anyio.move_on_after(pause):
                await self._wakeup.wait()
        finally:
            self._pacing = False
        self._paced_at = (anyio.current_time(), self.accepted)

    def hurry(self) -> None:
        """End the writer's pause, if it pauses (see ``pace``); safe from any thread."""
        if not self._pacing:
            return
        if threading.get_ident() == self._loop_thread:
            self._wakeup.set()
        elif self._call_soon is not None:
            try:
                self._call_soon(self._wakeup.set)
            except RuntimeError:  # the loop is gone
                pass

    def close(self, last: Event | None = None) -> None:
        """Refuse new events, queueing ``last`` (a run's terminal event) as the last one the
        writer takes, whatever the room; wake the writer and every waiting producer. ``last``
        is ignored once closed. Loop thread only."""
        with self._close_lock:
            if last is not None and not self.closed:
                # closed first: a producer that appends after ``last`` then sees it closed
                self.closed = self._notice = True
                self._last = last
                self.items.append(last)
            self.closed = self._notice = True
        self._wakeup.set()
        self._release_waiters()

    def finish(self) -> None:
        """The consumer stopped (drained, or abandoned at a close deadline): close, and refuse
        what is still queued as well as what comes (see settle). Loop thread only."""
        self.close()
        with self._close_lock:
            self._ended = True

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
