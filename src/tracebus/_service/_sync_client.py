"""SyncRemoteObserver: the remote observer's methods as plain calls, for sync code, worker
threads and subprocess workers.

The remote observer runs on an event loop in a daemon thread of its own (LoopThread); a call
builds the event on the caller's thread and appends it to the observer's queue, blocking only
while the queue is full. An observer that is never closed is closed at interpreter exit,
within ``exit_timeout``.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Literal

from .._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT
from .._event_methods import SyncEventMethods
from .._events import DEFAULT_MAX_PAYLOAD_BYTES, Event
from .._exceptions import BusClosedError, TracebusError, describe, keep_with_note
from .._loop_thread import DEFAULT_EXIT_TIMEOUT, LoopThread
from .._nats._settings import NatsSettings
from ._client import RemoteObserver
from ._delivery import RemoteStatistics
from ._limits import CLIENT_MAX_BATCH, CLIENT_RESEND_BUFFER, CONNECT_TIMEOUT, RECONNECT_TIMEOUT


class SyncRemoteObserver(SyncEventMethods):
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
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
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
            max_payload_bytes=max_payload_bytes,
        )
        self.workflow_id = self._remote.workflow_id
        self.run_id = self._remote.run_id
        self.producer = self._remote.producer
        self.total_nodes = total_nodes
        self._events = self._remote.events
        self._loop = LoopThread(
            self._remote,
            name=f"tracebus-remote-{self.run_id}",
            backend=backend,
            exit_timeout=exit_timeout,
            unwritten=lambda: self._remote.statistics().queued,
        )

    def close(self, timeout: float | None = None) -> None:
        """Record completion if this opener recorded none, wait until everything is written.

        Idempotent. Raises what closing raised (DeliveryError), once.
        """
        self._loop.close(timeout)

    def flush(self) -> None:
        """Block until everything emitted so far is written by the service."""
        self._loop.call(self._remote.flush)

    def __enter__(self) -> SyncRemoteObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self.closed and not self._remote.join:
            try:
                self.workflow_error(describe(exc))
            except BusClosedError:
                pass
        try:
            self.close()
        except TracebusError as failure:
            if exc is None:
                raise
            keep_with_note(exc, failure)  # the block's own error is what the user sees

    def mark_finished(self) -> None:
        self._remote.mark_finished()

    # -- introspection ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._loop.closed

    def statistics(self) -> RemoteStatistics:
        return self._remote.statistics()

    def _put(self, event: Event) -> None:
        if self._loop.closed:
            raise self._loop.refusal("remote observer")
        self._remote.put_from_thread(event)


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
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
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
        exit_timeout=exit_timeout,
        max_payload_bytes=max_payload_bytes,
    )
