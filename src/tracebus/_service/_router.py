"""Routes batches of events to their run's single writer, whatever transport brought them.

A run is opened by a batch whose first event is its ``workflow_start`` (the run's files are
made then, by ``open_run``, as an in-process Observer makes them) and joined by any batch
carrying its ids afterwards. Every run has one writer task; batches from all connections go
onto that run's queue in the order they arrive, which is the order of its trace. The writer
leaves out events a producer already delivered (``RunState.apply``). A run ends once its
``workflow_complete``/``workflow_error`` is queued: its writer drains, fsyncs and writes the
metadata. After a restart, a run still open in the registry is resumed by the first batch
that names it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from .._bus import EventBus
from .._events import Event, WorkflowStart
from .._exceptions import (
    BusClosedError,
    CloseTimeoutError,
    QueueFullError,
    ServiceError,
    SinkError,
)
from .._run import Run, open_run
from ._limits import (
    CLOSED_RUN_RETENTION,
    CLOSED_RUNS_IN_MEMORY,
    MAX_OPEN_RUNS,
    RUN_CLOSE_TIMEOUT,
    RUN_QUEUE_CAPACITY,
)
from ._protocol import Batch, check_batch
from ._registry import RunEntry, RunRegistry, prepare_resume

log = logging.getLogger("tracebus.service")

RunKey = tuple[str, str]


class Receipt:
    """What a transport waits for before it acknowledges a batch: the batch written, and
    for a batch that ended its run, the run's files closed and its metadata written."""

    __slots__ = ("_bus", "_ended")

    def __init__(self, bus: EventBus | None, ended: anyio.Event | None = None) -> None:
        self._bus = bus
        self._ended = ended

    async def wait(self) -> None:
        if self._bus is not None:
            await self._bus.wait_drained()
        if self._ended is not None:
            await self._ended.wait()


class _Slot:
    """A run the router holds: being opened, open, or ending."""

    def __init__(self, key: RunKey) -> None:
        self.key = key
        self.run: Run | None = None
        self.entry: RunEntry | None = None
        self.ready = anyio.Event()  # opened, or failed to
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.ending = False


class RunRouter:
    """Holds every run of one output directory and feeds each its batches.

    Use as an async context manager; leaving it ends every run (``aclose``).
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        max_open_runs: int = MAX_OPEN_RUNS,
        queue_capacity: int = RUN_QUEUE_CAPACITY,
        close_timeout: float = RUN_CLOSE_TIMEOUT,
    ) -> None:
        # absolute: the registry must find the files again whatever the next cwd
        self.output_dir = Path(output_dir).absolute()
        self._max_open_runs = max_open_runs
        self._queue_capacity = queue_capacity
        self._close_timeout = close_timeout
        self._registry = RunRegistry(self.output_dir)
        self._runs: dict[RunKey, _Slot] = {}
        self._ended: OrderedDict[RunKey, dict[str, int]] = OrderedDict()
        self._task_group: TaskGroup | None = None
        self._closing = False
        self.runs_opened = 0
        self.runs_resumed = 0
        self.runs_ended = 0
        self.events_received = 0
        self._written_closed = 0
        self._duplicates_closed = 0
        self.events_lost = 0

    async def __aenter__(self) -> RunRouter:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        removed = await anyio.to_thread.run_sync(self._registry.prune, CLOSED_RUN_RETENTION)
        if removed:
            log.info("removed %d registry entries of runs ended long ago", removed)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            # every run task has finished: the block's own exception is not the group's
            await self._task_group.__aexit__(None, None, None)
        return None

    async def submit(self, batch: Batch, producer: str) -> Receipt:
        """Queue a batch's events on its run's writer (waiting while that queue is full).

        Raises ProtocolError (``invalid_id``, ``invalid_event``) for a batch that breaks the
        rules, and ServiceError: ``run_not_open`` (no such run, and the batch does not open
        it), ``run_exists`` (a second producer opening an open run), ``run_ended``,
        ``too_many_runs``, ``open_failed``, ``resume_failed``, ``shutting_down``.
        """
        starts, ends = check_batch(batch, producer)
        key = (batch.workflow_id, batch.run_id)
        while True:
            slot = self._runs.get(key)
            if slot is None:
                if key in self._ended:
                    return self._late(key, batch, producer)
                await self._open(key, batch, producer)
                continue
            await slot.ready.wait()
            if slot.run is None:  # its opening failed; look again
                if self._runs.get(key) is slot:
                    del self._runs[key]
                continue
            if slot.ending:
                await slot.done.wait()
                continue
            break
        assert slot.run is not None and slot.entry is not None
        if starts and producer != slot.entry.opener:
            raise ServiceError(
                "run_exists", f"run {batch.run_id} was opened by producer {slot.entry.opener}"
            )
        bus = slot.run.bus
        try:
            await _feed(bus, batch.events)
        except BusClosedError:
            raise ServiceError("run_ended", f"run {batch.run_id} ended during the batch") from None
        self.events_received += len(batch.events)
        if ends:
            slot.ending = True
            slot.stop.set()
            return Receipt(bus, slot.done)
        return Receipt(bus)

    def _late(self, key: RunKey, batch: Batch, producer: str) -> Receipt:
        last = self._ended[key].get(producer, 0)
        if batch.events and all(event.seq <= last for event in batch.events):
            self._duplicates_closed += len(batch.events)
            return Receipt(None)
        raise ServiceError("run_ended", f"run {key[1]} of {key[0]} has ended")

    async def _open(self, key: RunKey, batch: Batch, producer: str) -> None:
        slot = self._runs[key] = _Slot(key)
        try:
            if self._closing:
                raise ServiceError("shutting_down", "the service is shutting down")
            try:
                entry = await anyio.to_thread.run_sync(self._registry.load, *key)
            except (OSError, msgspec.DecodeError) as exc:
                raise ServiceError("resume_failed", f"cannot read the run's entry: {exc}") from exc
            if entry is not None and entry.ended:
                self._remember_ended(key, entry.last_seq)
                del self._runs[key]
                return
            if len(self._runs) > self._max_open_runs:
                raise ServiceError(
                    "too_many_runs", f"the service holds its limit of {self._max_open_runs} runs"
                )
            if entry is None:
                slot.run, slot.entry = await self._new_run(key, batch, producer)
            else:
                slot.run, slot.entry = await self._resumed_run(entry), entry
            assert self._task_group is not None
            await self._task_group.start(self._run_task, slot)
            if slot.run.state.finished is not None:  # resumed after its end was written
                slot.ending = True
                slot.stop.set()
        except BaseException:
            slot.run = None
            if self._runs.get(key) is slot:
                del self._runs[key]
            raise
        finally:
            slot.ready.set()

    async def _new_run(self, key: RunKey, batch: Batch, producer: str) -> tuple[Run, RunEntry]:
        first = batch.events[0] if batch.events else None
        if not isinstance(first, WorkflowStart):
            raise ServiceError(
                "run_not_open",
                f"run {key[1]} of {key[0]} is not open: a run is opened by a batch that "
                "starts with its workflow_start",
            )
        if not first.output_dir:  # the producer cannot know where the service writes
            first.output_dir = str(self.output_dir)
        try:
            run = open_run(
                self.output_dir,
                key[0],
                key[1],
                first.total_nodes,
                pid=first.pid,
                progress=False,
                console=None,
                capacity=self._queue_capacity,
                overflow="raise",
                close_timeout=self._close_timeout,
            )
        except OSError as exc:
            raise ServiceError("open_failed", f"cannot make the run's files: {exc}") from exc
        entry = RunEntry.of(
            run.layout,
            started=run.started,
            opener=producer,
            pid=first.pid,
            total_nodes=first.total_nodes,
        )
        try:
            await anyio.to_thread.run_sync(self._registry.save, entry)
        except OSError as exc:
            raise ServiceError("open_failed", f"cannot record the run: {exc}") from exc
        self.runs_opened += 1
        log.info("run %s of %s opened: %s", key[1], key[0], run.layout.trace_file)
        return run, entry

    async def _resumed_run(self, entry: RunEntry) -> Run:
        try:
            resume, replay = await anyio.to_thread.run_sync(prepare_resume, entry, self.output_dir)
        except (OSError, msgspec.DecodeError) as exc:
            raise ServiceError("resume_failed", f"cannot resume run {entry.run_id}: {exc}") from exc
        run = open_run(
            self.output_dir,
            entry.workflow_id,
            entry.run_id,
            entry.total_nodes,
            pid=entry.pid,
            progress=False,
            console=None,
            capacity=self._queue_capacity,
            overflow="raise",
            close_timeout=self._close_timeout,
            resume=resume,
        )
        run.state.apply(replay)
        self.runs_resumed += 1
        log.info(
            "run %s of %s resumed after %d events", entry.run_id, entry.workflow_id, len(replay)
        )
        return run

    async def _run_task(self, slot: _Slot, *, task_status: TaskStatus[None]) -> None:
        run, entry = slot.run, slot.entry
        assert run is not None and entry is not None
        started = False
        try:
            async with run.bus:
                started = True
                task_status.started()
                await slot.stop.wait()
        except (SinkError, CloseTimeoutError) as exc:
            log.error("run %s of %s: %s", entry.run_id, entry.workflow_id, exc)
        finally:
            with anyio.CancelScope(shield=True):
                if started:
                    await self._retire(slot, run, entry)

    async def _retire(self, slot: _Slot, run: Run, entry: RunEntry) -> None:
        if self._runs.get(slot.key) is slot:
            del self._runs[slot.key]
        stats = run.bus.statistics()
        self._written_closed += stats.written
        self._duplicates_closed += stats.duplicates
        metadata = run.files.metadata or {}
        self.events_lost += int(metadata.get("events_lost", 0)) + stats.dropped
        if run.state.finished is not None:
            self.runs_ended += 1
            entry.ended = True
            entry.last_seq = dict(run.state.last_seq)
            self._remember_ended(slot.key, entry.last_seq)
            try:
                await anyio.to_thread.run_sync(self._registry.save, entry)
            except OSError as exc:
                log.error("run %s: cannot record its end: %s", entry.run_id, exc)
            log.info("run %s of %s ended: %s", entry.run_id, entry.workflow_id, run.state.status)
        slot.done.set()

    def _remember_ended(self, key: RunKey, last_seq: dict[str, int]) -> None:
        self._ended[key] = last_seq
        self._ended.move_to_end(key)
        while len(self._ended) > CLOSED_RUNS_IN_MEMORY:
            self._ended.popitem(last=False)

    async def aclose(self) -> None:
        """Refuse new runs, end every run: drain, fsync, write the metadata. Runs without a
        ``workflow_complete`` stay open in the registry, to be resumed."""
        self._closing = True
        slots = list(self._runs.values())
        for slot in slots:
            slot.stop.set()
        for slot in slots:
            await slot.ready.wait()
            if slot.run is not None:
                await slot.done.wait()

    def statistics(self) -> dict[str, int]:
        written, duplicates, queued = self._written_closed, self._duplicates_closed, 0
        for slot in self._runs.values():
            if slot.run is not None:
                stats = slot.run.bus.statistics()
                written += stats.written
                duplicates += stats.duplicates
                queued += stats.queued
        return {
            "runs_open": len(self._runs),
            "runs_opened": self.runs_opened,
            "runs_resumed": self.runs_resumed,
            "runs_ended": self.runs_ended,
            "events_received": self.events_received,
            "events_queued": queued,
            "events_written": written,
            "events_duplicate": duplicates,
            "events_dropped": self.events_lost,
        }


async def _feed(bus: EventBus, events: Sequence[Event]) -> None:
    """Queue every event, suspending only when the queue is full."""
    emit_nowait = bus.emit_nowait
    for event in events:
        try:
            emit_nowait(event)
        except QueueFullError:
            await bus.emit(event)
