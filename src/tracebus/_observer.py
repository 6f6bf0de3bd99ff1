"""Observer: the awaitable observer API on top of the bus, writing one run's files."""

from __future__ import annotations

import os
import sys
import warnings
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

import anyio
import anyio.to_thread

from ._blocking import ThreadProducer
from ._bus import BusStatistics, EventBus
from ._capture import RunCapture
from ._event_methods import AsyncEventMethods
from ._events import Event, check_total_nodes
from ._exceptions import (
    RunLockedError,
    TracebusError,
    TracebusWarning,
    describe,
    keep_with_note,
)
from ._factory import EventFactory
from ._layout import RunLayout, new_run_id, validate_id
from ._lock import RunLock, run_lock_path
from ._node import NodeScope as NodeScope
from ._options import (
    UNSET,
    ObserverOptions,
    RunOptions,
    shows_options,
    split_options,
    with_defaults,
)
from ._retention import Retention, apply_retention
from ._run_parts import open_run
from ._sinks._progress import PROGRESS_OPTIONS
from ._sinks._run_files import RunFiles


class Observer(AsyncEventMethods):
    """Records one workflow run: ``async with Observer(...) as obs``.

    Entering creates the run's files and starts the writer; leaving records
    ``workflow_complete`` (``workflow_error`` if the block raised) unless one was recorded,
    drains the queue, fsyncs the files and writes the metadata.

    ``overflow="block"`` (default) makes every method wait while the queue is full;
    ``overflow="drop"`` drops and counts non-lifecycle events instead. ``console`` receives
    the run's header and summary (default: stdout; None for silence). ``progress`` draws a
    tqdm bar on stderr of the finished nodes (``"succeeded"``: of the succeeded ones only).
    A free-form payload or text over ``max_payload_bytes`` encoded is stored as a marker (its
    hash, size, a prefix). ``retention`` (a ``Retention``; off by default) removes this
    workflow's older runs once the run is written, as ``tracebus prune`` would.

    Raises InvalidIdError (a ValueError) at construction for an unsafe workflow id, and
    RunLockedError at entry when another writer holds the run's lock (the same run id on the
    same output directory).
    """

    @shows_options(ObserverOptions)
    def __init__(
        self,
        workflow_id: str,
        output_dir: str | os.PathLike[str] = "runs",
        total_nodes: int = 0,
        **options: Unpack[ObserverOptions],
    ) -> None:
        given: ObserverOptions = with_defaults("Observer", options, ObserverOptions)
        run_id = given["run_id"]
        self.workflow_id = validate_id(workflow_id, "workflow_id")
        self.run_id = validate_id(run_id, "run_id") if run_id is not None else new_run_id()
        check_total_nodes(total_nodes)
        if given["progress"] not in PROGRESS_OPTIONS:
            raise ValueError(
                f"progress must be True, False or 'succeeded', got {given['progress']!r}"
            )
        if given["overflow"] not in ("block", "drop"):
            raise ValueError(f"overflow must be 'block' or 'drop', got {given['overflow']!r}")
        if given["retention"] is not None and not isinstance(given["retention"], Retention):
            raise TypeError(
                "retention must be a tracebus.Retention or None, "
                f"not {type(given['retention']).__name__}"
            )
        self._retention = given["retention"]
        if given["console"] is UNSET:
            given["console"] = sys.stdout
        given["sinks"] = tuple(given["sinks"])
        self.output_dir = Path(output_dir)
        self.total_nodes = total_nodes
        self.metadata: dict[str, Any] | None = None
        self.started: datetime | None = None
        self._run_options: RunOptions = split_options(given, RunOptions)
        self._drop = given["overflow"] == "drop"
        self._events = EventFactory(
            self.workflow_id, self.run_id, max_payload_bytes=given["max_payload_bytes"]
        )
        self._capture = RunCapture(self, given["capture_logging"], given["capture_warnings"])
        self._layout: RunLayout | None = None
        self._files: RunFiles | None = None
        self._bus: EventBus | None = None
        self._finished = False
        self._lock: RunLock | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Observer:
        if self._bus is not None:
            raise RuntimeError("an Observer can be entered only once")
        # held until the run is written: how ``tracebus runs`` and ``prune`` tell it is live
        self._lock = RunLock(run_lock_path(self.output_dir, self.workflow_id, self.run_id))
        try:
            self._lock.acquire()
        except RunLockedError:
            raise
        except OSError:  # no flock here (some network file systems): the run goes unlocked
            self._lock = None
        try:
            run = open_run(
                self.output_dir,
                self.workflow_id,
                self.run_id,
                self.total_nodes,
                pid=self._events.pid,
                **self._run_options,
            )
        except BaseException:
            if self._lock is not None:
                self._lock.release(remove=True)
            raise
        if self._lock is not None:
            self._lock.name_trace(run.layout.trace_file.name)
        self._layout, self._files, self._bus = run.layout, run.files, run.bus
        self.started = run.started
        bus = run.bus
        await bus.__aenter__()
        # a worker thread's call goes straight to the bus (one call fewer per event)
        self.put_from_thread = bus.emit_from_thread  # type: ignore[method-assign]
        # the run's start, as its files' names and its metadata have it, whatever entering took
        start = self._events.workflow_start(
            self.total_nodes, str(self.output_dir), run.state.started
        )
        await bus.emit(start)
        self._capture.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._capture.stop()
        bus = self._require_bus()
        terminal: Event | None = None
        try:
            if not self._finished:
                self._finished = True
                terminal = (
                    self._events.workflow_complete(None)
                    if exc is None
                    else self._events.workflow_error(describe(exc))
                )
        finally:
            try:
                try:
                    # queued as the queue closes: no thread's event lands after it
                    with anyio.CancelScope(shield=True):
                        await bus.aclose(terminal)
                finally:
                    await bus.__aexit__(exc_type, exc, tb)
            except TracebusError as failure:
                if exc is None:
                    raise
                keep_with_note(exc, failure)  # the block's own error is what the user sees
            finally:
                assert self._files is not None
                self.metadata = self._files.metadata
                if self._lock is not None:
                    self._lock.release(remove=True)
        if self._retention is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._apply_retention, self._retention)

    def _apply_retention(self, policy: Retention) -> None:
        """The retention policy, on this workflow's runs (never this one); warns, never
        raises, when the output directory cannot be listed."""
        try:
            apply_retention(self.output_dir, self.workflow_id, policy, spare=self.trace_file)
        except OSError as exc:
            warnings.warn(
                f"tracebus: retention not applied to {self.output_dir}: {exc}",
                TracebusWarning,
                stacklevel=2,
            )

    async def flush(self) -> None:
        """Wait until everything emitted so far is written, then write the metadata as it
        stands (the run stays open).

        Raises SinkError, as closing does, when the metadata cannot be written or one of the
        run's files failed (a full disk): the run goes on.
        """
        await self._require_bus().wait_drained()
        assert self._files is not None
        await self._files.flush()

    # -- the seed's vocabulary, awaitable ------------------------------------------------

    def mark_finished(self) -> None:
        """A terminal event was recorded: leaving the block adds none of its own."""
        self._finished = True

    # -- introspection --------------------------------------------------------------------

    @property
    def bus(self) -> EventBus:
        return self._require_bus()

    @property
    def threads(self) -> ThreadProducer[Observer]:
        """The same methods as plain calls, for worker threads (e.g. ``to_thread.run_sync``)."""
        return ThreadProducer(self)

    def put_from_thread(self, event: Event) -> None:
        """Enqueue from a thread other than the loop's, blocking it while the queue is full
        (under ``drop``, a non-lifecycle event is dropped instead)."""
        bus = self._bus
        if bus is None:
            bus = self._require_bus()  # raises
        bus.emit_from_thread(event)

    def put_droppable(self, event: Event) -> None:
        """Enqueue from any thread without waiting: dropped and counted when the queue is
        full, ignored when the run is not open (see EventBus.emit_droppable)."""
        bus = self._bus
        if bus is not None:
            bus.emit_droppable(event)

    def statistics(self) -> BusStatistics:
        return self._require_bus().statistics()

    @property
    def layout(self) -> RunLayout:
        if self._layout is None:
            raise RuntimeError("the run's files are made when the Observer is entered")
        return self._layout

    @property
    def trace_file(self) -> Path:
        return self.layout.trace_file

    @property
    def log_file(self) -> Path:
        return self.layout.log_file

    @property
    def audit_dir(self) -> Path:
        return self.layout.audit_dir

    @property
    def metadata_file(self) -> Path:
        """The run's metadata: its step's, or under ``previous/`` beside its audit copies once
        a later run of its step moved them there."""
        files = self._files
        return self.layout.metadata_file if files is None else files.metadata_file

    def _offer(self, event: Event) -> bool:
        bus = self._bus
        if bus is None:
            return False  # _emit says the observer is not open
        if self._drop:
            bus.emit_nowait(event)  # drops and counts the event when the queue is full
            return True
        return bus.offer(event)

    async def _emit(self, event: Event) -> None:
        await self._require_bus().emit(event)

    def _require_bus(self) -> EventBus:
        if self._bus is None:
            raise RuntimeError("the Observer is not open: use `async with Observer(...) as obs`")
        return self._bus
