"""SyncObserver: the observer API as plain, thread-safe calls, for sync and thread-pool runners.

An Observer made blocking (see BlockingObserver): its bus and writer run on an event loop in a
daemon thread of their own. An observer that is never closed is closed at interpreter exit
within ``exit_timeout``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Unpack

from ._blocking import BlockingObserver
from ._bus import BusStatistics
from ._layout import RunLayout
from ._observer import Observer
from ._options import (
    ObserverOptions,
    SyncObserverOptions,
    shows_options,
    split_options,
    with_defaults,
)


class SyncObserver(BlockingObserver[Observer]):
    """The methods of Observer as plain calls; safe from any number of threads.

    The run starts in the constructor (files made, writer running) and ends with ``close()``
    or at the end of a ``with`` block, which record ``workflow_complete`` (or
    ``workflow_error`` if the block raised) unless one was recorded. With
    ``end_on_close=False`` closing records no terminal event, so a run nothing ended stays
    "incomplete" in its metadata. The other options are Observer's, plus ``backend`` and
    ``exit_timeout``.
    """

    @shows_options(SyncObserverOptions)
    def __init__(
        self,
        workflow_id: str,
        output_dir: str | os.PathLike[str] = "runs",
        total_nodes: int = 0,
        **options: Unpack[SyncObserverOptions],
    ) -> None:
        given: SyncObserverOptions = with_defaults("SyncObserver", options, SyncObserverOptions)
        observer_options: ObserverOptions = split_options(given, ObserverOptions)
        observer = Observer(workflow_id, output_dir, total_nodes, **observer_options)
        if not given["end_on_close"]:
            observer.mark_finished()
        self.total_nodes = total_nodes
        super().__init__(
            observer,
            name=f"tracebus-{observer.run_id}",
            backend=given["backend"],
            exit_timeout=given["exit_timeout"],
        )

    # -- introspection: Observer's, one by one (typed, so that help() and mypy show each) ----

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
    def layout(self) -> RunLayout:
        return self.async_observer.layout
