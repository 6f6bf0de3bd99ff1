"""SyncObserver: the observer API as plain, thread-safe calls, for sync and thread-pool runners.

An Observer made blocking (see BlockingObserver): its bus and writer run on an event loop in a
daemon thread of their own. An observer that is never closed is closed at interpreter exit
within ``exit_timeout``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from ._blocking import BlockingObserver
from ._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT, BusStatistics
from ._events import DEFAULT_MAX_PAYLOAD_BYTES
from ._loop_thread import DEFAULT_EXIT_TIMEOUT
from ._observer import Observer
from ._options import UNSET
from ._sinks._progress import ProgressOption
from ._writer import Sink


class SyncObserver(BlockingObserver[Observer]):
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
        console: TextIO | None = UNSET,
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
        observer = Observer(
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
        if not end_on_close:
            observer.mark_finished()
        self.total_nodes = total_nodes
        super().__init__(
            observer, name=f"tracebus-{observer.run_id}", backend=backend, exit_timeout=exit_timeout
        )

    # -- introspection ------------------------------------------------------------------

    def statistics(self) -> BusStatistics:
        return self.async_observer.statistics()

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.async_observer.metadata

    @property
    def output_dir(self) -> Path:
        return self.async_observer.output_dir

    @property
    def started(self) -> datetime:
        """When the run started (local time, as in the files' names)."""
        assert self.async_observer.started is not None
        return self.async_observer.started

    @property
    def trace_file(self) -> Path:
        return self.async_observer.trace_file

    @property
    def log_file(self) -> Path:
        return self.async_observer.log_file

    @property
    def audit_dir(self) -> Path:
        return self.async_observer.audit_dir

    @property
    def metadata_file(self) -> Path:
        return self.async_observer.metadata_file

    @property
    def layout(self) -> Any:
        return self.async_observer.layout
