"""The single writer task: drains the queue in batches, a step at a time stamps them
(``seq``, ``timestamp``, leaving out a producer's resends: see Stamper) and has the sinks that
ask for it prepare them (a run's files encode their lines while the events are still in the
CPU cache), hands each batch to every sink and subscriber, and closes the sinks once the queue
is closed and empty.

A batch is taken from the queue a step at a time, the producers running between the steps,
and grows while a backlog lasts, up to ``max_batch``; it goes to the OS once complete (one
write per file per batch). So a quiet run writes each event at once and a busy one writes
large batches; fed by threads, on a loop of its own, the writer also pauses between two
batches it kept up with (see EventQueue.pace). Files are fsynced at close.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import anyio.lowlevel

from ._events import Event
from ._exceptions import SinkError
from ._feed import SinkFeed, sink_name
from ._queue import EventQueue
from ._sinks import Sink
from ._stamping import Stamper

#: How long closing the sinks may take once the queue is drained.
SINK_CLOSE_TIMEOUT = 30.0

#: Events taken and prepared between two checkpoints: the writer never holds the event loop
#: for long (well under 1 ms a step).
STEP_EVENTS = 96

#: A step that takes longer than this (events carrying large payloads) makes the next steps
#: smaller, down to one event, until steps are quick again.
STEP_SECONDS = 0.001


class Subscription:
    """An async iterator over the events written after it was made.

    The writer holds only its sending end: a subscription dropped by its owner (a ``break``
    out of ``async for``, the last reference gone) closes its receiving end, and the writer
    forgets it at its next batch.
    """

    def __init__(self, max_buffer: int, start: int) -> None:
        self.start = start
        self.send, self._receive = anyio.create_memory_object_stream[Event](max_buffer)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop receiving; the writer forgets this subscriber."""
        self._receive.close()

    def __del__(self) -> None:
        receive = getattr(self, "_receive", None)
        if receive is not None:
            receive.close()


class _Subscriber:
    """What the writer keeps of a subscription: its sending end, never the subscription."""

    __slots__ = ("send", "start")

    def __init__(self, subscription: Subscription) -> None:
        self.send = subscription.send
        self.start = subscription.start


class Writer:
    """The only code that touches the sinks."""

    def __init__(
        self,
        queue: EventQueue,
        sinks: Sequence[Sink],
        *,
        max_batch: int,
        detached: Sequence[Sink] = (),
        detached_capacity: int = 10_000,
        detached_close_timeout: float = SINK_CLOSE_TIMEOUT,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.finished = anyio.Event()
        self.written = 0
        self.duplicates = 0
        self.unprepared = 0
        self.batches = 0
        self.in_progress = 0
        self.subscriptions: list[_Subscriber] = []
        self.subscriber_dropped = 0
        self._queue = queue
        self._sinks = list(sinks)
        self._feeds = [SinkFeed(sink, detached_capacity) for sink in detached]
        self._feed_close_timeout = detached_close_timeout
        #: Set when closing begins: until when the detached sinks may catch up.
        self.feeds_deadline: float | None = None
        self._max_batch = max_batch
        #: The writer's stamping (``seq``, ``timestamp``, resends left out).
        self.stamper = Stamper()
        self._preparers: list[tuple[Sink, Callable[[list[Event]], list[Event]]]] = [
            (sink, prepare) for sink in sinks if (prepare := getattr(sink, "prepare", None))
        ]
        self._more: list[tuple[Sink, Callable[[], bool]]] = [
            (sink, more) for sink in sinks if (more := getattr(sink, "prepare_more", None))
        ]
        self._step = STEP_EVENTS
        #: Events written and not yet released: freed a step at a time while the next batch
        #: is gathered, as freeing a batch of thousands at once held the loop for about 0.5 ms.
        self._spent: list[Event] = []
        self._failures: dict[str, tuple[int, BaseException]] = {}
        self._scope: anyio.CancelScope | None = None
        self._progress_waiters = 0
        self._progressed = anyio.Event()

    def subscribe(self, subscription: Subscription) -> AsyncIterator[Event]:
        if self.finished.is_set():
            subscription.send.close()
        else:
            self.subscriptions.append(_Subscriber(subscription))
        return subscription

    async def wait_written(self, count: int) -> None:
        """Wait until ``count`` events in all have been through the sinks (or left out as
        duplicates, or lost), or the writer ends."""
        while self.written + self.duplicates + self.unprepared < count and not (
            self.finished.is_set()
        ):
            self._queue.hurry()
            progressed = self._progressed
            self._progress_waiters += 1
            try:
                await progressed.wait()
            finally:
                self._progress_waiters -= 1

    def cancel(self) -> None:
        """Abandon what is still queued (close timed out); the sinks are still closed."""
        if self._scope is not None:
            self._scope.cancel()

    @property
    def failures(self) -> dict[str, tuple[int, BaseException]]:
        """Each failed sink's name: (events it lost, its first error), so far."""
        failures = dict(self._failures)
        for feed in self._feeds:
            if feed.error is not None:
                failures[feed.name] = (feed.lost, feed.error)
        return failures

    def raise_failures(self) -> None:
        """Raise SinkError if any sink failed during the run."""
        failures = self.failures
        if failures:
            raise SinkError(failures)

    async def open(self) -> None:
        """Open the sinks (shielded, as a half-opened file is worse than a late cancel); if
        one fails, close them all and re-raise. A detached sink has as long to open as it has
        to catch up at close: TimeoutError if it takes longer."""
        try:
            with anyio.CancelScope(shield=True):
                for sink in self._sinks:
                    aopen = getattr(sink, "aopen", None)
                    if aopen is not None:
                        await aopen()
                for feed in self._feeds:
                    aopen = getattr(feed.sink, "aopen", None)
                    if aopen is None:
                        continue
                    with anyio.move_on_after(self._feed_close_timeout) as scope:
                        await aopen()
                    if scope.cancelled_caught:
                        raise TimeoutError(
                            f"sink {feed.name}: aopen() did not return within "
                            f"{self._feed_close_timeout:g}s"
                        )
        except BaseException:
            await self._finish()
            raise

    async def run(self) -> None:
        """Drain the queue until it is closed and empty, then close the sinks.

        Shielded: a cancelled producer scope must not stop the drain; only close()'s deadline
        (``cancel()``) does. So it is started only once the sinks are open, and nothing may
        wait for it but the code that closes the queue.
        """
        try:
            async with anyio.create_task_group() as feeds:
                for feed in self._feeds:
                    feeds.start_soon(feed.run)
                try:
                    with anyio.CancelScope(shield=True) as self._scope:
                        await self._drain()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._close_feeds(self._feed_seconds_left())
        finally:
            self._queue.finish()  # had the writer stopped early, producers must not wait on it
            await self._finish()

    def _feed_seconds_left(self) -> float:
        """The detached sinks' time to catch up at close: none if the close deadline passed,
        else what is left of theirs (half the close deadline, from when closing began)."""
        if self._scope is None or self._scope.cancel_called:
            return 0.0
        if self.feeds_deadline is None:
            return self._feed_close_timeout
        return max(0.0, self.feeds_deadline - anyio.current_time())

    async def _close_feeds(self, seconds: float) -> None:
        """Give the detached sinks ``seconds`` to take what they hold, then stop them: what
        they did not take is counted as lost for them."""
        for feed in self._feeds:
            feed.close()
        with anyio.move_on_after(seconds):
            for feed in self._feeds:
                await feed.done.wait()
        for feed in self._feeds:
            if not feed.done.is_set():
                feed.cancel(seconds)
                await feed.done.wait()

    async def _finish(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._close_sinks()
        for subscriber in self.subscriptions:
            subscriber.send.close()
        self.finished.set()
        self._progressed.set()

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            taken, batch, lost = await self._gather()
            if not taken:
                if queue.closed:
                    return
                await queue.wait_for_events()
                continue
            if batch:
                for sink in self._sinks:
                    try:
                        await sink.write_batch(batch)
                    except Exception as exc:
                        self._record(sink, len(batch), exc)
                for feed in self._feeds:
                    feed.offer(batch)
                if self.subscriptions:
                    self._publish(batch)
                self._spent += batch
            self.written += len(batch)
            self.duplicates += taken - len(batch) - lost
            self.unprepared += lost
            del batch  # its events are in _spent
            self.batches += 1
            self.in_progress = 0
            if self._progress_waiters:
                self._progressed.set()
                self._progressed = anyio.Event()
            if taken < self._max_batch:
                await queue.pace()  # kept up: the producers' turn (a pause, from threads)
            else:
                await anyio.lowlevel.checkpoint()  # a backlog: the producers' turn, briefly

    async def _gather(self) -> tuple[int, list[Event], int]:
        """Take events a step at a time, stamping and preparing each step, for as long as the
        queue holds a step's worth or more (a backlog), up to max_batch; a short step means the
        writer has caught up, and the batch goes out. Returns how many were taken, those kept,
        and how many were lost (a step that could not be stamped or prepared).

        A step that took over STEP_SECONDS to prepare makes the next ones smaller."""
        queue, limit, stamp, spent = self._queue, self._max_batch, self.stamper, self._spent
        taken = lost = 0
        kept: list[Event] = []
        while True:
            step = self._step
            events = queue.take(min(step, limit - taken))
            if not events:
                break
            del spent[-len(events) :]
            taken += len(events)
            self.in_progress = taken
            started = time.thread_time()  # the CPU it takes: a busy machine's pauses aside
            step_of: object = stamp  # whose step failed, if one does
            try:
                stamped = stamp(events)
                for step_of, prepare in self._preparers:  # noqa: B007 - read in the except
                    stamped = prepare(stamped)
                seconds = time.thread_time() - started
                for step_of, more in self._more:  # noqa: B007 - read in the except
                    while more():  # a step too long for one turn (the run's end), in parts
                        await anyio.lowlevel.checkpoint()
                kept += stamped
            except Exception as exc:  # the writer never dies of an event: count them lost
                self._record(step_of, len(events), exc)
                lost += len(events)
                seconds = time.thread_time() - started
            self._adapt_step(len(events), seconds)
            if taken >= limit or len(events) < step:
                break
            await anyio.lowlevel.checkpoint()  # the producers' turn
        return taken, kept, lost

    def _adapt_step(self, events: int, seconds: float) -> None:
        if seconds > STEP_SECONDS:
            self._step = max(1, min(events, int(events * STEP_SECONDS / seconds)))
        elif self._step < STEP_EVENTS:
            self._step = min(STEP_EVENTS, self._step * 2)

    def _publish(self, batch: list[Event]) -> None:
        first = self.written + self.duplicates + self.unprepared
        for subscriber in list(self.subscriptions):
            skip = max(0, subscriber.start - first)
            for event in batch[skip:] if skip else batch:
                try:
                    subscriber.send.send_nowait(event)
                except anyio.WouldBlock:
                    self.subscriber_dropped += 1
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self.subscriptions.remove(subscriber)
                    subscriber.send.close()
                    break

    async def _close_sinks(self) -> None:
        for sink in self._sinks:
            aclose = getattr(sink, "aclose", None)
            if aclose is None:
                continue
            with anyio.move_on_after(SINK_CLOSE_TIMEOUT) as scope:
                try:
                    await aclose()
                except SinkError as exc:
                    self._failures.update(exc.failures)
                except Exception as exc:
                    self._record(sink, 0, exc)
            if scope.cancelled_caught:
                self._record(sink, 0, TimeoutError(f"closing took over {SINK_CLOSE_TIMEOUT}s"))

    def _record(self, sink: object, lost: int, exc: BaseException) -> None:
        name = sink_name(sink)
        previous_lost, first = self._failures.get(name, (0, exc))
        self._failures[name] = (previous_lost + lost, first)
