"""STAND-IN for the collector service's run routing (``tracebus._service._router.RunRouter``
and its registry, issue 4), which had not landed when the NATS collector was written.

It does the least the collector needs: one writer per run (``open_run``), a run opened by its
``workflow_start`` and ended by ``workflow_complete``/``workflow_error``, events a producer
already delivered left out, and a run left open by a killed collector resumed from its files.
At merge, ``_collector`` should route through the service's RunRouter and this module go.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from .._bus import EventBus
from .._events import AnyEvent, Event, WorkflowComplete, WorkflowError, WorkflowStart
from .._exceptions import CloseTimeoutError, QueueFullError, SinkError
from .._layout import RunLayout
from .._run import open_run
from .._sinks._metadata import write_json_atomic
from .._sinks._run import RunFiles
from .._state import RunState

log = logging.getLogger("tracebus.nats")

RunKey = tuple[str, str]
QUEUE_CAPACITY = 20_000
CLOSE_TIMEOUT = 30.0


class _Entry(msgspec.Struct, kw_only=True):
    layout: dict[str, str]
    total_nodes: int
    pid: int
    started: float
    ended: bool = False
    last_seq: dict[str, int] = {}


@dataclass(eq=False)
class _Run:
    key: RunKey
    bus: EventBus
    state: RunState
    entry: _Entry
    last_seq: dict[str, int]
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


class Submitted:
    """What ``RunRouter.submit`` did with a batch: ``status`` is ``"queued"`` (await
    ``wait()`` before acknowledging), ``"duplicate"`` (every event was written before),
    ``"not_open"`` (no such run yet) or ``"ended"``."""

    __slots__ = ("status", "_wait")

    def __init__(self, status: str, wait: Callable[[], object] | None = None) -> None:
        self.status = status
        self._wait = wait

    async def wait(self) -> None:
        if self._wait is not None:
            await self._wait()  # type: ignore[misc]


class RunRouter:
    """Every run of one output directory: ``async with RunRouter(out) as router``."""

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir)
        self._root = self.output_dir / ".tracebus" / "nats-runs"
        self._runs: dict[RunKey, _Run] = {}
        self._ended: dict[RunKey, dict[str, int]] = {}
        self._task_group: TaskGroup | None = None
        self._lock = anyio.Lock()

    async def __aenter__(self) -> RunRouter:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task_group is not None
        with anyio.CancelScope(shield=True):
            for run in list(self._runs.values()):
                run.stop.set()
            for run in list(self._runs.values()):
                await run.done.wait()
        await self._task_group.__aexit__(None, None, None)

    def last_seq(self, key: RunKey, producer: str) -> int | None:
        """The highest ``seq`` written for ``producer`` in an open run, or None."""
        run = self._runs.get(key)
        return None if run is None else run.last_seq.get(producer, 0)

    async def submit(self, key: RunKey, producer: str, events: list[Event]) -> Submitted:
        """Queue a batch of one producer's events on its run's writer.

        Raises OSError or msgspec.DecodeError when a run's files cannot be made or resumed.
        """
        run = self._runs.get(key)
        if run is None:
            async with self._lock:  # one opening at a time: a run is opened once
                run = self._runs.get(key) or await self._open(key, events)
            if run is None:
                last = self._ended.get(key)
                if last is not None:
                    if all(e.seq <= last.get(producer, 0) for e in events):
                        return Submitted("duplicate")
                    return Submitted("ended")
                return Submitted("not_open")
        if run.stop.is_set():
            await run.done.wait()
            return await self.submit(key, producer, events)
        floor = run.last_seq.get(producer, 0)
        fresh = [e for e in events if e.seq > floor]
        if not fresh:
            return Submitted("duplicate")
        run.last_seq[producer] = fresh[-1].seq
        ends = False
        for event in fresh:
            try:
                run.bus.emit_nowait(event)
            except QueueFullError:
                await run.bus.emit(event)
            ends = ends or type(event) in (WorkflowComplete, WorkflowError)
        if ends:
            run.stop.set()
            return Submitted("queued", run.done.wait)
        return Submitted("queued", run.bus.wait_drained)

    async def _open(self, key: RunKey, events: list[Event]) -> _Run | None:
        entry = await anyio.to_thread.run_sync(self._load, key)
        if entry is not None and entry.ended:
            self._ended[key] = entry.last_seq
            return None
        if entry is not None:
            run = await self._resume(key, entry)
        elif events and isinstance(events[0], WorkflowStart):
            run = await self._create(key, events[0])
        else:
            return None
        assert self._task_group is not None
        await self._task_group.start(self._run_task, run)
        self._runs[key] = run
        return run

    async def _create(self, key: RunKey, start: WorkflowStart) -> _Run:
        opened = open_run(
            self.output_dir,
            key[0],
            key[1],
            start.total_nodes,
            pid=start.pid,
            progress=False,
            console=None,
            capacity=QUEUE_CAPACITY,
            overflow="raise",
            close_timeout=CLOSE_TIMEOUT,
        )
        layout = {name: str(getattr(opened.layout, name)) for name in RunLayout.__slots__}
        entry = _Entry(
            layout=layout,
            total_nodes=start.total_nodes,
            pid=start.pid,
            started=opened.started.timestamp(),
        )
        await anyio.to_thread.run_sync(self._save, key, entry)
        log.info("run %s of %s opened: %s", key[1], key[0], opened.layout.trace_file)
        return _Run(key, opened.bus, opened.state, entry, {})

    async def _resume(self, key: RunKey, entry: _Entry) -> _Run:
        text = ("workflow_id", "run_id", "step_num", "stamp")
        fields = {k: v if k in text else Path(v) for k, v in entry.layout.items()}
        layout = RunLayout(**fields)  # type: ignore[arg-type]
        written = await anyio.to_thread.run_sync(_prepare_resume, layout)
        state = RunState(key[0], key[1], entry.total_nodes, entry.started)
        state.apply(written)
        last_seq: dict[str, int] = {}
        for event in written:
            if event.producer is not None:
                last_seq[event.producer] = max(last_seq.get(event.producer, 0), event.seq)
        bus: EventBus
        files = RunFiles(
            layout,
            state,
            pid=entry.pid,
            started=datetime.fromtimestamp(entry.started),
            progress=False,
            console=None,
            dropped=lambda: bus.statistics().dropped,
            events_before=len(written),
        )
        bus = EventBus(
            (files,),
            capacity=QUEUE_CAPACITY,
            overflow="raise",
            close_timeout=CLOSE_TIMEOUT,
            stamp=state.apply,
        )
        log.info("run %s of %s resumed after %d events", key[1], key[0], len(written))
        return _Run(key, bus, state, entry, last_seq)

    async def _run_task(self, run: _Run, *, task_status: TaskStatus[None]) -> None:
        try:
            async with run.bus:
                task_status.started()
                await run.stop.wait()
        except (SinkError, CloseTimeoutError) as exc:
            log.error("run %s of %s: %s", run.key[1], run.key[0], exc)
        finally:
            with anyio.CancelScope(shield=True):
                del self._runs[run.key]
                if run.state.finished is not None:
                    run.entry.ended = True
                    run.entry.last_seq = dict(run.last_seq)
                    self._ended[run.key] = run.entry.last_seq
                    try:
                        await anyio.to_thread.run_sync(self._save, run.key, run.entry)
                    except OSError as exc:
                        log.error("run %s: cannot record its end: %s", run.key[1], exc)
                run.done.set()

    def _path(self, key: RunKey) -> Path:
        return self._root / key[0] / f"{key[1]}.json"

    def _load(self, key: RunKey) -> _Entry | None:
        try:
            return msgspec.json.decode(self._path(key).read_bytes(), type=_Entry)
        except FileNotFoundError:
            return None

    def _save(self, key: RunKey, entry: _Entry) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, msgspec.to_builtins(entry))


_trace_decoder = msgspec.json.Decoder(AnyEvent)


def _prepare_resume(layout: RunLayout) -> list[Event]:
    """Cut torn last lines (a kill mid-write), make the audit trace a copy of the main one,
    and return the events the trace holds."""
    data = _cut_torn_tail(layout.trace_file)
    layout.audit_trace_file.write_bytes(data)
    for log_file in (layout.log_file, layout.audit_log_file):
        if log_file.exists():
            _cut_torn_tail(log_file)
    return _trace_decoder.decode_lines(data) if data else []


def _cut_torn_tail(path: Path) -> bytes:
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1
    if whole != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(whole)
    return data[:whole]
