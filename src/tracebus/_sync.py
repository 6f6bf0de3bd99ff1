"""SyncObserver: the observer API as plain, thread-safe calls, for sync and thread-pool runners.

The bus and its writer run on an event loop in a daemon thread of their own (LoopThread). A
call builds the event on the caller's thread and appends it to the queue; it blocks only while
the queue is full. An observer that is never closed is closed at interpreter exit within
``exit_timeout``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO

from ._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT, BusStatistics
from ._events import DEFAULT_MAX_PAYLOAD_BYTES, Event
from ._exceptions import BusClosedError, TracebusError, describe, keep_with_note
from ._loop_thread import DEFAULT_EXIT_TIMEOUT, LoopThread
from ._observer import _UNSET, Observer
from ._sinks._progress import ProgressOption
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
    "incomplete" in its metadata. The other options are Observer's, plus ``backend`` and
    ``exit_timeout``.
    """

    def __init__(
        self,
        workflow_id: str,
        output_dir: str | os.PathLike[str] = "runs",
        total_nodes: int = 0,
        *,
        progress: ProgressOption = True,
        console: TextIO | None = _UNSET,
        sinks: Sequence[Sink] = (),
        capacity: int = DEFAULT_CAPACITY,
        overflow: Literal["block", "drop"] = "block",
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        run_id: str | None = None,
        backend: Literal["asyncio", "trio"] = "asyncio",
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
        end_on_close: bool = True,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        super().__init__(
            Observer(
                workflow_id,
                output_dir,
                total_nodes,
                progress=progress,
                console=console,
                sinks=sinks,
                capacity=capacity,
                overflow=overflow,
                close_timeout=close_timeout,
                run_id=run_id,
                max_payload_bytes=max_payload_bytes,
            )
        )
        if not end_on_close:
            self._observer.mark_finished()
        self.total_nodes = total_nodes
        self._loop = LoopThread(
            self._observer,
            name=f"tracebus-{self.run_id}",
            backend=backend,
            exit_timeout=exit_timeout,
            unwritten=lambda: self._observer.statistics().queued,
        )

    def close(self, timeout: float | None = None) -> None:
        """Record completion if nothing ended the run, drain, fsync, write metadata.

        Idempotent. Raises what closing raised (SinkError, CloseTimeoutError), once.
        """
        self._loop.close(timeout)

    def flush(self) -> None:
        """Block until everything emitted so far is written; write the metadata as it stands."""
        self._loop.call(self._observer.flush)

    def __enter__(self) -> SyncObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self.closed:
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
        return self._loop.closed

    def _put(self, event: Event) -> None:
        if self._loop.closed:
            raise self._loop.refusal("observer")
        self._observer.bus.emit_from_thread(event)
