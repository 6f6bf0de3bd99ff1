"""SyncRemoteObserver: the remote observer's methods as plain calls, for sync code, worker
threads and subprocess workers.

The remote observer runs on an event loop in a daemon thread of its own; a call builds the
event on the caller's thread and appends it to the observer's queue, blocking only while the
queue is full. An ``atexit`` hook closes an observer that was never closed, within
``exit_timeout``.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from types import TracebackType
from typing import Literal

import anyio
import anyio.from_thread
import anyio.lowlevel

from .._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT
from .._events import Event
from .._exceptions import BusClosedError
from .._nats._settings import NatsSettings
from .._vocabulary import SyncCalls
from ._client import RemoteObserver
from ._delivery import RemoteStatistics
from ._limits import CLIENT_MAX_BATCH, CLIENT_RESEND_BUFFER, CONNECT_TIMEOUT, RECONNECT_TIMEOUT


class SyncRemoteObserver(SyncCalls):
    """The methods of RemoteObserver as plain calls; safe from any number of threads.

    The constructor connects (and opens or joins the run); ``close()``, or the end of a
    ``with`` block, records ``workflow_complete`` (``workflow_error`` if the block raised)
    for an opener that recorded none, and waits until everything is written.

    Raises, from the constructor, what entering a RemoteObserver raises.
    """

    def __init__(
        self,
        address: str | os.PathLike[str] | NatsSettings,
        workflow_id: str,
        total_nodes: int = 0,
        *,
        run_id: str | None = None,
        join: bool = False,
        producer: str | None = None,
        token: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Literal["block", "drop"] = "block",
        max_batch: int = CLIENT_MAX_BATCH,
        resend_buffer: int = CLIENT_RESEND_BUFFER,
        reconnect_timeout: float = RECONNECT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        backend: Literal["asyncio", "trio"] = "asyncio",
        exit_timeout: float = 5.0,
    ) -> None:
        self._remote = RemoteObserver(
            address,
            workflow_id,
            total_nodes,
            run_id=run_id,
            join=join,
            producer=producer,
            token=token,
            capacity=capacity,
            overflow=overflow,
            max_batch=max_batch,
            resend_buffer=resend_buffer,
            reconnect_timeout=reconnect_timeout,
            close_timeout=close_timeout,
            connect_timeout=connect_timeout,
        )
        self.workflow_id = self._remote.workflow_id
        self.run_id = self._remote.run_id
        self.producer = self._remote.producer
        self.total_nodes = total_nodes
        self._events = self._remote.events
        self._exit_timeout = exit_timeout
        self._ready = threading.Event()
        self._done = threading.Event()
        self._close_lock = threading.Lock()
        self._closed = False
        self._entered = False
        self._error: BaseException | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._stop: anyio.Event | None = None
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(backend,),
            name=f"tracebus-remote-{self.run_id}",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if not self._entered:
            self._thread.join()
            assert self._error is not None
            error, self._error = self._error, None
            raise error
        _open_observers.add(self)

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
        async with self._remote:
            self._entered = True
            self._ready.set()
            await self._stop.wait()

    def close(self, timeout: float | None = None) -> None:
        """Record completion if this opener recorded none, wait until everything is written.

        Idempotent. Raises what closing raised (DeliveryError), once.
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
        """Block until everything emitted so far is written by the service."""
        if self._done.is_set() or self._token is None:
            raise BusClosedError("the remote observer is closed")
        anyio.from_thread.run(self._remote.flush, token=self._token)

    def __enter__(self) -> SyncRemoteObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self._closed and not self._remote.join:
            try:
                self.workflow_error(f"{type(exc).__name__}: {exc}")
            except BusClosedError:
                pass
        self.close()

    def mark_finished(self) -> None:
        self._remote.mark_finished()

    # -- introspection ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> RemoteStatistics:
        return self._remote.statistics()

    def _put(self, event: Event) -> None:
        if self._closed:
            raise BusClosedError("the remote observer is closed; the event was not accepted")
        self._remote._put_from_thread(event)

    def _close_at_exit(self) -> None:
        try:
            self.close(timeout=self._exit_timeout)
        except Exception:  # noqa: S110 - at exit there is no one left to tell
            pass


def connect_sync(
    address: str | os.PathLike[str] | NatsSettings,
    workflow_id: str,
    total_nodes: int = 0,
    *,
    run_id: str | None = None,
    join: bool = False,
    producer: str | None = None,
    token: str | None = None,
    capacity: int = DEFAULT_CAPACITY,
    overflow: Literal["block", "drop"] = "block",
    max_batch: int = CLIENT_MAX_BATCH,
    resend_buffer: int = CLIENT_RESEND_BUFFER,
    reconnect_timeout: float = RECONNECT_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    backend: Literal["asyncio", "trio"] = "asyncio",
) -> SyncRemoteObserver:
    """The sync twin of ``connect``: connected on return; use ``with`` or call ``close()``."""
    return SyncRemoteObserver(
        address,
        workflow_id,
        total_nodes,
        run_id=run_id,
        join=join,
        producer=producer,
        token=token,
        capacity=capacity,
        overflow=overflow,
        max_batch=max_batch,
        resend_buffer=resend_buffer,
        reconnect_timeout=reconnect_timeout,
        close_timeout=close_timeout,
        connect_timeout=connect_timeout,
        backend=backend,
    )


_open_observers: weakref.WeakSet[SyncRemoteObserver] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for observer in list(_open_observers):
        observer._close_at_exit()


atexit.register(_close_all_at_exit)
