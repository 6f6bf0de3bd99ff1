"""Routes batches of events to their run's single writer, whatever transport brought them.

A run is opened by a batch whose first event is its ``workflow_start`` (the run's files are
made then, by ``open_run``, as an in-process Observer makes them) and joined by any batch
carrying its ids afterwards. Every run has one writer task; batches from all connections go
onto that run's queue in the order they arrive, which is the order of its trace. The writer
leaves out events a producer already delivered (``RunState.apply``). A run ends once its
``workflow_complete``/``workflow_error`` is queued: its writer drains, fsyncs and writes the
metadata. After a restart, a run still open in the registry is resumed by the first batch
that names it.

A batch counts as written once its events are in the run's main trace (the write returned;
files are fsynced when the run ends). The writer of a collector's run stops at the first
append the trace refuses (a full disk): nothing after it is written, the run is closed, and
its next batch takes it back from its trace, so the files never skip an event a producer
still holds. The feeders that had batches in the failed writer (connections, or a NATS
collector) are refused that run until they leave and come back, sending what was not
acknowledged in order. Each run's writer holds the run's lock (``RunLock``) while it has the
files open, so two collectors on one output directory never write one run.
"""

from __future__ import annotations

import logging
import os
import resource
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
    RunLockedError,
    ServiceError,
    SinkError,
)
from .._lock import RunLock, run_lock_path
from .._run_parts import Run, open_run
from .._sinks import Sink
from ._codes import ErrorCode
from ._limits import (
    CLOSED_RUN_RETENTION,
    CLOSED_RUNS_IN_MEMORY,
    DESCRIPTOR_RESERVE,
    MAX_OPEN_RUNS,
    RUN_CLOSE_TIMEOUT,
    RUN_DESCRIPTORS,
    RUN_IDLE_TIMEOUT,
    RUN_QUEUE_CAPACITY,
    SEQ_WINDOW,
)
from ._protocol import Batch, check_batch
from ._registry import RunEntry, RunRegistry, prepare_resume

log = logging.getLogger("tracebus.service")

RunKey = tuple[str, str]


class Receipt:
    """What a transport waits for before it answers a batch: ``wait()`` says whether the
    batch was written (for a batch that ended its run: and the run's files closed and its
    metadata written)."""

    __slots__ = ("_run", "_end", "_slot")

    def __init__(self, run: Run | None, end: int = 0, slot: _Slot | None = None) -> None:
        self._run = run
        self._end = end  # the run's queue position just after the batch's last event
        self._slot = slot  # set for a batch that ends its run

    async def wait(self) -> bool:
        run = self._run
        if run is None:
            return True  # nothing to write: resends of an ended run
        await run.bus.wait_drained()
        if self._slot is not None:
            await self._slot.done.wait()
            if not self._slot.ended:
                return False
        return run.files.settled >= self._end


#: A receipt for what needs no writing.
WRITTEN = Receipt(None)


class _Slot:
    """A run the router holds: being opened, open, or ending."""

    def __init__(self, key: RunKey) -> None:
        self.key = key
        self.run: Run | None = None
        self.entry: RunEntry | None = None
        self.lock: RunLock | None = None
        self.ready = anyio.Event()  # opened, or failed to
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.ending = False
        self.writing = False  # its writer task runs (and will release the lock)
        self.ended = False  # its end is written and recorded
        self.broken: OSError | None = None  # the trace refused a write
        self.metadata_error: BaseException | None = None
        #: Who fed it and is still there; the connections among them keep it from idling.
        self.feeders: set[object] = set()
        self.connections: set[object] = set()
        self.active = anyio.current_time()
        #: The highest seq each producer sent into the run (queued, or in its trace).
        self.seen: dict[str, int] = {}


#: Makes the sinks of each run a router opens or resumes, beside its files (``serve
#: --otlp-endpoint``: an OtlpExporter each).
RunSinks = Callable[[], Sequence[Sink]]


class RunRouter:
    """Holds every run of one output directory and feeds each its batches.

    Use as an async context manager; leaving it ends every run (``aclose``). ``run_sinks``
    makes the sinks each run it opens or resumes writes to beside its files.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        max_open_runs: int = MAX_OPEN_RUNS,
        queue_capacity: int = RUN_QUEUE_CAPACITY,
        close_timeout: float = RUN_CLOSE_TIMEOUT,
        idle_timeout: float = RUN_IDLE_TIMEOUT,
        seq_window: int = SEQ_WINDOW,
        run_sinks: RunSinks | None = None,
    ) -> None:
        # absolute: the registry must find the files again whatever the next cwd
        self.output_dir = Path(output_dir).absolute()
        self._max_open_runs = max_open_runs
        self._queue_capacity = queue_capacity
        self._close_timeout = close_timeout
        self._idle_timeout = idle_timeout
        self._seq_window = seq_window
        self._run_sinks = run_sinks
        self._registry = RunRegistry(self.output_dir)
        self._runs: dict[RunKey, _Slot] = {}
        self._ended: OrderedDict[RunKey, dict[str, int]] = OrderedDict()
        self._fed: dict[object, set[RunKey]] = {}  # feeder -> the runs it fed
        self._refused: dict[RunKey, set[object]] = {}  # feeders to send again first
        self._task_group: TaskGroup | None = None
        self._reaper = anyio.CancelScope()
        self._closing = False
        self.runs_opened = 0
        self.runs_resumed = 0
        self.runs_ended = 0
        self.runs_idle_closed = 0
        #: Runs not ended that were still held when the router closed (left to be resumed).
        self.runs_left_open = 0
        self.events_received = 0
        self._written_closed = 0
        self._duplicates_closed = 0
        self._unwritten_closed = 0
        self.events_lost = 0

    async def __aenter__(self) -> RunRouter:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        removed = await anyio.to_thread.run_sync(self._registry.prune, CLOSED_RUN_RETENTION)
        if removed:
            log.info("removed %d registry entries of runs ended long ago", removed)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._close_idle_runs)
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

    async def submit(
        self,
        batch: Batch,
        producer: str,
        feeder: object = None,
        *,
        connected: bool = True,
        in_order: bool = False,
    ) -> Receipt:
        """Queue a batch's events on its run's writer (waiting while that queue is full).
        ``feeder`` is who sends it, told ``leave`` when it is gone: the router knows by it whom
        to refuse after a failed write, and, for a ``connected`` feeder (a producer's
        connection, not a NATS collector), that the run is not idle while it is there.
        With ``in_order``, a batch that does not start right after what its producer sent
        before is refused (``seq_ahead``), for the caller to hold it until the rest arrives.

        Raises ProtocolError (``invalid_id``, ``invalid_event``) for a batch that breaks the
        rules, and ServiceError: ``run_not_open`` (no such run, and the batch does not open
        it), ``run_exists`` (a second producer opening an open run), ``run_ended``,
        ``seq_gap`` (a seq far past what its producer sent), ``seq_ahead``, ``too_many_runs``,
        ``shutting_down``; and those after which the batch is to be sent again
        (``ErrorCode.defers``): ``write_failed`` (the run's trace refused a write this feeder had a
        batch in), ``open_failed``, ``resume_failed``, ``run_locked`` (another process writes
        the run).
        """
        starts, ends, top, low = check_batch(batch, producer)
        key = (batch.workflow_id, batch.run_id)
        if feeder is not None and feeder in self._refused.get(key, ()):
            raise ServiceError(
                ErrorCode.WRITE_FAILED,
                f"run {key[1]} could not write an earlier batch of this connection: "
                "connect again and send everything not acknowledged",
            )
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
                failure = slot.broken or slot.metadata_error
                if failure is not None:  # the files refuse writes: later, not in a loop
                    raise ServiceError(
                        ErrorCode.WRITE_FAILED, f"run {batch.run_id} could not write: {failure}"
                    )
                continue
            break
        assert slot.run is not None and slot.entry is not None
        if starts and producer != slot.entry.opener:
            raise ServiceError(
                ErrorCode.RUN_EXISTS,
                f"run {batch.run_id} was opened by producer {slot.entry.opener}",
            )
        seen = slot.seen.get(producer, 0)
        if top > seen + self._seq_window:
            raise ServiceError(
                ErrorCode.SEQ_GAP,
                f"seq {top} is more than {self._seq_window:,} past the highest ({seen}) "
                f"producer {producer} sent into run {batch.run_id}",
            )
        if in_order and low > seen + 1:
            raise ServiceError(
                ErrorCode.SEQ_AHEAD,
                f"producer {producer}'s events {seen + 1}..{low - 1} of run {batch.run_id} "
                "are still to come",
            )
        if feeder is not None:
            slot.feeders.add(feeder)
            if connected:
                slot.connections.add(feeder)
            self._fed.setdefault(feeder, set()).add(key)
        slot.active = anyio.current_time()
        bus = slot.run.bus
        try:
            await _feed(bus, batch.events)
        except BusClosedError:
            if slot.broken is not None:
                raise ServiceError(
                    ErrorCode.WRITE_FAILED, f"run {batch.run_id} could not write: {slot.broken}"
                ) from None
            raise ServiceError(
                ErrorCode.RUN_ENDED, f"run {batch.run_id} ended during the batch"
            ) from None
        if top > seen:
            slot.seen[producer] = top
        self.events_received += len(batch.events)
        end = bus.statistics().emitted
        if ends:
            slot.ending = True
            slot.stop.set()
            return Receipt(slot.run, end, slot)
        return Receipt(slot.run, end)

    def leave(self, feeder: object) -> None:
        """``feeder`` is gone (or starts again from what was acknowledged): its runs may
        become idle, and it may send again to runs that refused it."""
        now = anyio.current_time()
        for key in self._fed.pop(feeder, ()):
            slot = self._runs.get(key)
            if slot is not None:
                slot.feeders.discard(feeder)
                slot.connections.discard(feeder)
                slot.active = now
        for key, refused in list(self._refused.items()):
            refused.discard(feeder)
            if not refused:
                del self._refused[key]

    def _late(self, key: RunKey, batch: Batch, producer: str) -> Receipt:
        last = self._ended[key].get(producer, 0)
        if batch.events and all(event.seq <= last for event in batch.events):
            self._duplicates_closed += len(batch.events)
            return WRITTEN
        raise ServiceError(ErrorCode.RUN_ENDED, f"run {key[1]} of {key[0]} has ended")

    async def _open(self, key: RunKey, batch: Batch, producer: str) -> None:
        slot = self._runs[key] = _Slot(key)
        try:
            if self._closing:
                raise ServiceError(ErrorCode.SHUTTING_DOWN, "the service is shutting down")
            entry = await anyio.to_thread.run_sync(self._load, key)
            if entry is not None and entry.ended:
                self._remember_ended(key, entry.last_seq)
                del self._runs[key]
                return
            if len(self._runs) > self._max_open_runs:
                raise ServiceError(
                    ErrorCode.TOO_MANY_RUNS,
                    f"the service holds its limit of {self._max_open_runs} runs",
                )
            _check_descriptors()
            slot.lock = RunLock(run_lock_path(self.output_dir, *key))
            # again under the lock: another collector may have written the run meanwhile
            entry = await anyio.to_thread.run_sync(self._lock_and_load, slot.lock, key)
            if entry is not None and entry.ended:
                slot.lock.release()
                self._remember_ended(key, entry.last_seq)
                del self._runs[key]
                return
            if entry is None:
                slot.run, slot.entry = await self._new_run(key, batch, producer, slot)
            else:
                slot.run, slot.entry = await self._resumed_run(entry, slot), entry
                slot.seen = dict(slot.run.state.last_seq)
            assert self._task_group is not None
            await self._task_group.start(self._run_task, slot)
            if slot.run.state.finished is not None:  # resumed after its end was written
                slot.ending = True
                slot.stop.set()
        except BaseException:
            if slot.lock is not None and not slot.writing:
                slot.lock.release()
            slot.run = None
            if self._runs.get(key) is slot:
                del self._runs[key]
            raise
        finally:
            slot.ready.set()

    def _load(self, key: RunKey) -> RunEntry | None:
        try:
            return self._registry.load(*key)
        except (OSError, msgspec.DecodeError) as exc:
            raise ServiceError(
                ErrorCode.RESUME_FAILED, f"cannot read the run's entry: {exc}"
            ) from exc

    def _lock_and_load(self, lock: RunLock, key: RunKey) -> RunEntry | None:
        """Take the run's lock, then read its entry (blocking: from a worker thread)."""
        try:
            lock.acquire()
        except RunLockedError as exc:
            raise ServiceError(ErrorCode.RUN_LOCKED, f"run {key[1]} of {key[0]}: {exc}") from None
        except OSError as exc:
            raise ServiceError(ErrorCode.OPEN_FAILED, f"cannot lock run {key[1]}: {exc}") from exc
        try:
            return self._load(key)
        except BaseException:
            lock.release()
            raise

    async def _new_run(
        self, key: RunKey, batch: Batch, producer: str, slot: _Slot
    ) -> tuple[Run, RunEntry]:
        first = batch.events[0] if batch.events else None
        if not isinstance(first, WorkflowStart):
            raise ServiceError(
                ErrorCode.RUN_NOT_OPEN,
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
                overflow="block",
                close_timeout=self._close_timeout,
                on_trace_failure=lambda exc: self._trace_failed(slot, exc),
                sinks=self._sinks_of_a_run(),
            )
        except OSError as exc:
            raise ServiceError(
                ErrorCode.OPEN_FAILED, f"cannot make the run's files: {exc}"
            ) from exc
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
            raise ServiceError(ErrorCode.OPEN_FAILED, f"cannot record the run: {exc}") from exc
        self.runs_opened += 1
        log.info("run %s of %s opened: %s", key[1], key[0], run.layout.trace_file)
        return run, entry

    async def _resumed_run(self, entry: RunEntry, slot: _Slot) -> Run:
        try:
            resume, replay = await anyio.to_thread.run_sync(prepare_resume, entry, self.output_dir)
        except OSError as exc:
            raise ServiceError(
                ErrorCode.RESUME_FAILED, f"cannot resume run {entry.run_id}: {exc}"
            ) from exc
        run = open_run(
            self.output_dir,
            entry.workflow_id,
            entry.run_id,
            entry.total_nodes,
            pid=entry.pid,
            progress=False,
            console=None,
            capacity=self._queue_capacity,
            overflow="block",
            close_timeout=self._close_timeout,
            resume=resume,
            on_trace_failure=lambda exc: self._trace_failed(slot, exc),
            sinks=self._sinks_of_a_run(),
        )
        run.state.apply(replay)
        self.runs_resumed += 1
        log.info(
            "run %s of %s resumed after %d events", entry.run_id, entry.workflow_id, len(replay)
        )
        return run

    def _sinks_of_a_run(self) -> Sequence[Sink]:
        return tuple(self._run_sinks()) if self._run_sinks is not None else ()

    def _trace_failed(self, slot: _Slot, exc: OSError) -> None:
        """The run's trace refused a write (called by its writer): end this writer, and refuse
        the run to whoever had batches in it until they come back."""
        slot.broken = exc
        slot.ending = True
        slot.stop.set()
        self._refused.setdefault(slot.key, set()).update(slot.feeders)
        log.error(
            "run %s of %s: the trace refused a write (%s): nothing more is written by this "
            "writer; the producers keep what was not acknowledged and send it again",
            slot.key[1], slot.key[0], exc,
        )  # fmt: skip

    async def _run_task(self, slot: _Slot, *, task_status: TaskStatus[None]) -> None:
        run, entry = slot.run, slot.entry
        assert run is not None and entry is not None
        started = False
        try:
            async with run.bus:
                started = slot.writing = True
                task_status.started()
                await slot.stop.wait()
        except (SinkError, CloseTimeoutError) as exc:
            if isinstance(exc, SinkError):
                slot.metadata_error = exc.failures.get(str(run.layout.metadata_file), (0, None))[1]
            else:
                slot.metadata_error = exc
            log.error("run %s of %s: %s", entry.run_id, entry.workflow_id, exc)
        finally:
            with anyio.CancelScope(shield=True):
                if started:
                    await self._retire(slot, run, entry)

    async def _retire(self, slot: _Slot, run: Run, entry: RunEntry) -> None:
        if self._runs.get(slot.key) is slot:
            del self._runs[slot.key]
        stats = run.bus.statistics()
        files = run.files
        self._written_closed += files.trace_written
        self._duplicates_closed += stats.duplicates - files.refused
        self._unwritten_closed += files.unwritten
        metadata = files.metadata or {}
        self.events_lost += int(metadata.get("events_lost", 0)) - files.unwritten + stats.dropped
        if files.unwritten:
            log.error(
                "run %s of %s closed: %d events were not written (acknowledged to nobody: "
                "their producers send them again)",
                entry.run_id, entry.workflow_id, files.unwritten,
            )  # fmt: skip
        ended = (
            run.state.finished is not None and slot.broken is None and slot.metadata_error is None
        )
        if ended:
            entry.ended = True
            entry.last_seq = dict(run.state.last_seq)
            try:
                await anyio.to_thread.run_sync(self._registry.save, entry)
            except OSError as exc:
                log.error("run %s: cannot record its end: %s", entry.run_id, exc)
                ended = False
        if ended:
            self.runs_ended += 1
            self._remember_ended(slot.key, entry.last_seq)
            log.info("run %s of %s ended: %s", entry.run_id, entry.workflow_id, run.state.status)
        elif self._closing:
            self.runs_left_open += 1
        slot.ended = ended
        if slot.lock is not None:
            slot.lock.release()
        slot.done.set()

    async def _close_idle_runs(self) -> None:
        """Close the runs no connected producer feeds and nothing came for in
        ``idle_timeout`` seconds: producers that died leave no run holding its files."""
        timeout = self._idle_timeout
        with self._reaper:
            while True:
                await anyio.sleep(min(max(timeout / 4, 0.05), 30.0))
                now = anyio.current_time()
                for slot in list(self._runs.values()):
                    if (
                        slot.run is not None
                        and not slot.ending
                        and not slot.connections
                        and now - slot.active >= timeout
                    ):
                        slot.ending = True
                        slot.stop.set()
                        self.runs_idle_closed += 1
                        log.info(
                            "run %s of %s: no producer for %gs; closed (incomplete, resumed by "
                            "its next batch)",
                            slot.key[1], slot.key[0], timeout,
                        )  # fmt: skip

    def _remember_ended(self, key: RunKey, last_seq: dict[str, int]) -> None:
        self._ended[key] = last_seq
        self._ended.move_to_end(key)
        while len(self._ended) > CLOSED_RUNS_IN_MEMORY:
            self._ended.popitem(last=False)

    async def aclose(self) -> None:
        """Refuse new runs, end every run: drain, fsync, write the metadata. Runs without a
        ``workflow_complete`` stay open in the registry, to be resumed."""
        self._closing = True
        self._reaper.cancel()
        slots = list(self._runs.values())
        for slot in slots:
            slot.stop.set()
        for slot in slots:
            await slot.ready.wait()
            if slot.run is not None:
                await slot.done.wait()

    def statistics(self) -> dict[str, int]:
        written, duplicates = self._written_closed, self._duplicates_closed
        unwritten, queued = self._unwritten_closed, 0
        for slot in self._runs.values():
            if slot.run is not None:
                stats = slot.run.bus.statistics()
                files = slot.run.files
                written += files.trace_written
                duplicates += stats.duplicates - files.refused
                unwritten += files.unwritten
                queued += stats.queued
        return {
            "runs_open": len(self._runs),
            "runs_opened": self.runs_opened,
            "runs_resumed": self.runs_resumed,
            "runs_ended": self.runs_ended,
            "runs_idle_closed": self.runs_idle_closed,
            "events_received": self.events_received,
            "events_queued": queued,
            "events_written": written,
            "events_duplicate": duplicates,
            "events_unwritten": unwritten,
            "events_dropped": self.events_lost,
        }


def _check_descriptors() -> None:
    """Raises ServiceError ``too_many_runs`` when opening a run would leave fewer file
    descriptors free than the service keeps for its connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    try:
        in_use = len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
    except OSError:
        return
    if soft - in_use < RUN_DESCRIPTORS + DESCRIPTOR_RESERVE:
        raise ServiceError(
            ErrorCode.TOO_MANY_RUNS,
            f"file descriptors run short ({in_use} of the limit of {soft} in use): no new run "
            "until some end (raise the limit, `ulimit -n`, or lower --max-open-runs)",
        )


async def _feed(bus: EventBus, events: Sequence[Event]) -> None:
    """Queue every event, suspending only when the queue is full."""
    emit_nowait = bus.emit_nowait
    for event in events:
        try:
            emit_nowait(event)
        except QueueFullError:
            await bus.emit(event)
