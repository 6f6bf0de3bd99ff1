"""The blocking side of an async observer, written once: plain, thread-safe calls for sync
code and worker threads.

``BlockingObserver`` hosts an async observer on an event loop in a daemon thread of its own
(LoopThread) and turns it into its blocking twin; ``ThreadProducer`` gives the worker threads of
a running async observer the same calls. A call builds the event on the caller's thread and
hands it to the observer's queue (``put_from_thread``), blocking only while the queue is full.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar

from ._event_methods import SyncEventMethods
from ._events import Event
from ._exceptions import TracebusError, keep_with_note
from ._factory import EventFactory
from ._loop_thread import LoopThread


class _Counters(Protocol):
    @property
    def queued(self) -> int: ...


class AsyncObserver(Protocol):
    """What the blocking side needs of an async observer (Observer, RemoteObserver)."""

    workflow_id: str
    run_id: str

    @property
    def events(self) -> EventFactory: ...

    def mark_finished(self) -> None: ...

    def put_from_thread(self, event: Event) -> None:
        """Enqueue from a thread other than the loop's, blocking it while the queue is full."""
        ...

    def put_droppable(self, event: Event) -> None:
        """Enqueue from any thread without waiting (dropped and counted when full)."""
        ...

    async def flush(self) -> None: ...

    def statistics(self) -> _Counters: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


A = TypeVar("A", bound=AsyncObserver)


class ThreadProducer(SyncEventMethods, Generic[A]):
    """The calls of a running async observer as plain calls, for its worker threads
    (``observer.threads``). A call blocks its thread only while the queue is full."""

    def __init__(self, observer: A) -> None:
        self.async_observer = observer
        self._events = observer.events
        self.workflow_id = observer.workflow_id
        self.run_id = observer.run_id

    def _put(self, event: Event) -> None:
        self.async_observer.put_from_thread(event)

    def put_droppable(self, event: Event) -> None:
        self.async_observer.put_droppable(event)

    def mark_finished(self) -> None:
        self.async_observer.mark_finished()


class BlockingObserver(SyncEventMethods, Generic[A]):
    """An async observer entered on a loop thread of its own in the constructor and left in
    ``close()`` or at the end of a ``with`` block (which hands the async observer the block's
    error, as ``async with`` would).

    Raises, from the constructor, what entering the async observer raised.
    """

    #: How a refused event names the observer.
    kind = "observer"

    def __init__(
        self,
        observer: A,
        *,
        name: str,
        backend: Literal["asyncio", "trio"],
        exit_timeout: float,
    ) -> None:
        self.async_observer = observer
        self._events = observer.events
        self.workflow_id = observer.workflow_id
        self.run_id = observer.run_id
        self._loop = LoopThread(
            observer,
            name=name,
            backend=backend,
            exit_timeout=exit_timeout,
            unwritten=lambda: observer.statistics().queued,
        )
        self._put_from_thread = observer.put_from_thread  # as it is once entered

    def close(self, timeout: float | None = None) -> None:
        """Leave the async observer (it records the run's end and waits for its writes).

        Idempotent. Raises what closing raised (SinkError, DeliveryError...), once, and
        CloseTimeoutError when closing takes longer than ``timeout``.
        """
        self._loop.close(timeout)

    def flush(self) -> None:
        """Block until everything emitted so far is written (see the async ``flush``)."""
        self._loop.call(self.async_observer.flush)

    @property
    def closed(self) -> bool:
        return self._loop.closed

    def mark_finished(self) -> None:
        self.async_observer.mark_finished()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._loop.close(None, exc)
        except TracebusError as failure:
            if exc is None:
                raise
            keep_with_note(exc, failure)  # the block's own error is what the user sees

    def _put(self, event: Event) -> None:
        if self._loop.closed:
            raise self._loop.refusal(self.kind)
        self._put_from_thread(event)

    def put_droppable(self, event: Event) -> None:
        """Enqueue without waiting: dropped and counted when the queue is full, ignored once
        closed (see ``LoggingHandler``)."""
        self.async_observer.put_droppable(event)
