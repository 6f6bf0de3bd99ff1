"""SyncObserver: the observer API as plain, thread-safe calls, for sync and thread-pool runners.

The bus and its writer run on an event loop in a daemon thread of their own. A call builds
the event on the caller's thread and appends it to the queue; it blocks only while the queue
is full. A daemon thread (not a pool thread) keeps an observer that is never closed from
holding up interpreter exit; an ``atexit`` hook closes it within ``exit_timeout``.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - see _register below
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT, BusStatistics, EventBus
from ._events import Event
from ._exceptions import BusClosedError
from ._observer import _UNSET, Observer
from ._vocabulary import SyncCalls
from ._writer import Sink


class ThreadProducer(SyncCalls):
    """The observer methods as plain calls for worker threads of a running Observer
    (``observer.threads``). A call blocks its thread only while the queue is full."""

    def __init__(self, observer: Observer) -> None:
        self._observer = observer
        self._events = observer.events
        self.workflow_id = observer.workflow_id
        self.run_id = observer.run_id

    def _put(self, event: Event) -> None:
        self._observer.bus.emit_from_thread(event)

    def mark_finished(self) -> None:
        self._observer.mark_finished()


class SyncObserver(ThreadProducer):
    """The methods of Observer as plain calls; safe from any number of threads.

    The run starts in the constructor (files made, writer running) and ends with ``close()``
    or at the end of a ``with`` block, which record ``workflow_complete`` (or
    ``workflow_error`` if the block raised) unless one was recorded. With
    ``end_on_close=False`` closing records no terminal event, so a run nothing ended stays
    "incomplete" in its metadata.
    """

    def __init__(
        self,
        workflow_id: str,
        output_dir: str | os.PathLike[str] = "runs",
        total_nodes: int = 0,
        *,
        progress: bool = True,
        console: TextIO | None = _UNSET,
        sinks: Sequence[Sink] = (),
        capacity: int = DEFAULT_CAPACITY,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        run_id: str | None = None,
        backend: Literal["asyncio", "trio"] = "asyncio",
        exit_timeout: float = 5.0,
        end_on_close: bool = True,
    ) -> None:
        self._observer = Observer(
            workflow_id,
            output_dir,
            total_nodes,
            progress=progress,
            console=console,
            sinks=sinks,
            capacity=capacity,
            close_timeout=close_timeout,
            run_id=run_id,
        )
        super().__init__(self._observer)
        if not end_on_close:
            self._observer.mark_finished()
        self.workflow_id = self._observer.workflow_id
        self.run_id = self._observer.run_id
        self.total_nodes = total_nodes
        self._exit_timeout = exit_timeout
        self._ready = threading.Event()
        self._done = threading.Event()
        self._close_lock = threading.Lock()
        self._closed = False
        self._error: BaseException | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._stop: anyio.Event | None = None
        self._thread = threading.Thread(
            target=self._thread_main, args=(backend,), name=f"tracebus-{self.run_id}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._bus_or_none() is None or self._done.is_set():
            self._thread.join()
            assert self._error is not None
            raise self._error
        _register_exit(self)

    # -- the run ----------------------------------------------------------------------------

    def _thread_main(self, backend: str) -> None:
        try:
            anyio.run(self._serve, backend=backend)
        except BaseException as exc:  # handed to the thread that calls close()
            self._error = exc
        finally:
            self._done.set()
            self._ready.set()

    async def _serve(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._stop = anyio.Event()
        async with self._observer:
            self._ready.set()
            await self._stop.wait()

    def close(self, timeout: float | None = None) -> None:
        """Record completion if nothing ended the run, drain, fsync, write metadata.

        Idempotent. Raises what closing raised (SinkError, CloseTimeoutError), once.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if not self._done.is_set() and self._stop is not None:
            try:
                anyio.from_thread.run_sync(self._stop.set, token=self._token)
            except anyio.RunFinishedError:
                pass
        self._done.wait(timeout)
        error, self._error = self._error, None
        if error is not None:
            raise error

    def flush(self) -> None:
        """Block until everything emitted so far is written; write the metadata as it stands."""
        self._call(self._observer.flush)

    def __enter__(self) -> SyncObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self._closed:
            try:
                self.workflow_error(f"{type(exc).__name__}: {exc}")
            except BusClosedError:
                pass
        self.close()

    # -- introspection ------------------------------------------------------------------

    def statistics(self) -> BusStatistics:
        return self._observer.statistics()

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self._observer.metadata

    @property
    def output_dir(self) -> Path:
        return self._observer.output_dir

    @property
    def started(self) -> datetime:
        """When the run started (local time, as in the files' names)."""
        assert self._observer.started is not None
        return self._observer.started

    @property
    def trace_file(self) -> Path:
        return self._observer.trace_file

    @property
    def log_file(self) -> Path:
        return self._observer.log_file

    @property
    def audit_dir(self) -> Path:
        return self._observer.audit_dir

    @property
    def metadata_file(self) -> Path:
        return self._observer.metadata_file

    @property
    def layout(self) -> Any:
        return self._observer.layout

    @property
    def closed(self) -> bool:
        return self._closed

    def _put(self, event: Event) -> None:
        bus = self._bus_or_none()
        if bus is None or self._closed:
            raise BusClosedError("the observer is closed; the event was not accepted")
        bus.emit_from_thread(event)

    def _bus_or_none(self) -> EventBus | None:
        try:
            return self._observer.bus
        except RuntimeError:
            return None

    def _call(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._done.is_set() or self._token is None:
            raise BusClosedError("the observer is closed")
        anyio.from_thread.run(func, token=self._token)

    def _close_at_exit(self) -> None:
        try:
            self.close(timeout=self._exit_timeout)
        except Exception:  # noqa: S110 - at exit there is no one left to tell
            pass


_open_observers: weakref.WeakSet[SyncObserver] = weakref.WeakSet()


def _register_exit(observer: SyncObserver) -> None:
    _open_observers.add(observer)


def _close_all_at_exit() -> None:
    for observer in list(_open_observers):
        observer._close_at_exit()


# The writer's file I/O runs on executor threads, and interpreter exit shuts executors down
# (in threading's own exit hooks, which run before atexit's). Register with those hooks
# after concurrent.futures has, so ours runs first (they run last-in, first-out).
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_close_all_at_exit)
