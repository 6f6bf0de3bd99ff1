from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import tracebus
from tests.conftest import GatedSink, note
from tracebus import Event, EventBus, Note
from tracebus.testing import CapturingSink

pytestmark = pytest.mark.anyio


async def test_events_reach_the_sink_in_emit_order() -> None:
    sink = CapturingSink()
    async with EventBus([sink]) as bus:
        for i in range(1_000):
            await bus.emit(note(i))
    assert [int(e.message) for e in sink.of_type(Note)] == list(range(1_000))
    assert bus.statistics().written == 1_000


async def test_emit_nowait_raises_when_full() -> None:
    async with EventBus([CapturingSink()], capacity=4) as bus:
        for i in range(4):
            bus.emit_nowait(note(i))
        with pytest.raises(tracebus.QueueFullError, match=r"event queue full \(4 events\)"):
            bus.emit_nowait(note(4))


async def test_offer_enqueues_while_there_is_room_and_never_drops() -> None:
    sink = CapturingSink()
    bus = EventBus([sink], capacity=3, overflow="drop")
    with pytest.raises(tracebus.BusClosedError, match="not open yet"):
        bus.offer(note(0))
    async with bus:
        assert [bus.offer(note(i)) for i in range(5)] == [True, True, True, False, False]
        assert bus.statistics().dropped == 0  # refused, not dropped: the caller keeps them
    assert [int(e.message) for e in sink.of_type(Note)] == [0, 1, 2]
    with pytest.raises(tracebus.BusClosedError, match="closed"):
        bus.offer(note(5))


async def test_drop_policy_drops_and_counts_but_keeps_lifecycle_events() -> None:
    sink = CapturingSink()
    async with EventBus([sink], capacity=2, overflow="drop") as bus:
        for i in range(5):
            bus.emit_nowait(note(i))
        failure = tracebus.NodeFailure(
            epoch_seconds=0.0,
            pid=1,
            workflow_id="wf",
            run_id="r",
            node_id="n",
            duration_seconds=0.0,
            error="kept",
        )
        bus.emit_nowait(failure)
        assert bus.statistics().dropped == 3
    assert sink.types() == ["note", "note", "node_failure"]


async def test_emit_waits_while_full_then_proceeds() -> None:
    sink = GatedSink()
    async with EventBus([sink], capacity=2) as bus:
        await bus.emit(note(0))
        await sink.entered.wait()  # the writer holds event 0 and is stuck in the sink
        await bus.emit(note(1))
        await bus.emit(note(2))
        done = anyio.Event()

        async def late() -> None:
            await bus.emit(note(3))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(late)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert bus.statistics().queued == 2
            sink.gate.set()
    assert [e.message for e in sink.of_type(Note)] == ["0", "1", "2", "3"]


async def test_emit_after_close_raises() -> None:
    bus = EventBus([CapturingSink()])
    async with bus:
        pass
    with pytest.raises(tracebus.BusClosedError, match="closed"):
        await bus.emit(note(0))
    with pytest.raises(tracebus.BusClosedError, match="closed"):
        bus.emit_nowait(note(0))


async def test_emit_before_enter_says_so() -> None:
    bus = EventBus([CapturingSink()])
    with pytest.raises(tracebus.BusClosedError, match="not open yet"):
        bus.emit_nowait(note(0))


async def test_close_is_idempotent() -> None:
    async with EventBus([CapturingSink()]) as bus:
        await bus.emit(note(0))
        await bus.aclose()
        await bus.aclose()
    assert bus.closed


async def test_threads_emit_in_order_with_backpressure() -> None:
    sink = CapturingSink()
    per_thread = 2_000
    async with EventBus([sink], capacity=16) as bus:

        def produce(worker: int) -> None:
            for i in range(per_thread):
                bus.emit_from_thread(
                    Note(
                        epoch_seconds=0.0, pid=worker, workflow_id="wf", run_id="r", message=str(i)
                    )
                )

        async with anyio.create_task_group() as tg:
            for worker in range(8):
                tg.start_soon(anyio.to_thread.run_sync, produce, worker)
    assert len(sink.events) == 8 * per_thread
    for worker in range(8):
        mine = [int(e.message) for e in sink.of_type(Note) if e.pid == worker]
        assert mine == list(range(per_thread))


async def test_thread_emit_times_out_when_the_queue_stays_full() -> None:
    sink = GatedSink()
    async with EventBus([sink], capacity=1) as bus:
        await bus.emit(note(0))
        await sink.entered.wait()
        await bus.emit(note(1))
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                bus.emit_from_thread(note(2), timeout=0.05)
            except tracebus.QueueFullError as exc:
                errors.append(exc)

        await anyio.to_thread.run_sync(produce)
        sink.gate.set()
    assert len(errors) == 1 and "still full" in str(errors[0])
    assert [e.message for e in sink.of_type(Note)] == ["0", "1"]


def test_thread_emit_wakes_an_idle_writer() -> None:
    sink = CapturingSink()
    arrived = threading.Event()

    async def main() -> None:
        async with EventBus([sink]) as bus:
            await anyio.to_thread.run_sync(bus.emit_from_thread, note(1))
            with anyio.fail_after(5):
                await bus.wait_drained()
            arrived.set()

    anyio.run(main)
    assert arrived.is_set() and len(sink.events) == 1


class CancellingSink(CapturingSink):
    """Cancels ``scope`` while the bus is being entered, as a signal handler might."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        super().__init__()
        self.scope = scope
        self.closed = False

    async def aopen(self) -> None:
        self.scope.cancel()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_bus_cancelled_while_entering_closes_instead_of_hanging(backend: str) -> None:
    outcome: list[object] = []

    async def main() -> None:
        with anyio.CancelScope() as scope:
            sink = CancellingSink(scope)
            async with EventBus([sink]) as bus:
                bus.emit_nowait(note(1))
                await anyio.sleep(1)
        outcome.extend(
            [scope.cancelled_caught, sink.closed, [e.message for e in sink.of_type(Note)]]
        )

    # in a thread: a hang must fail the test, and a shielded wait cannot be timed out
    thread = threading.Thread(
        target=anyio.run, args=(main,), kwargs={"backend": backend}, daemon=True
    )
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "entering a cancelled bus hung"
    assert outcome == [True, True, ["1"]]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        EventBus(capacity=0)
    with pytest.raises(ValueError, match="overflow must be 'block' or 'drop', got 'wait'"):
        EventBus(overflow="wait")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        EventBus(max_batch=0)


async def test_drop_policy_drops_in_emit_and_from_threads_too() -> None:
    sink = GatedSink()
    async with EventBus([sink], capacity=2, overflow="drop") as bus:
        await bus.emit(note(0))
        await sink.entered.wait()  # the writer holds event 0: the queue stays full from here
        await bus.emit(note(1))
        await bus.emit(note(2))
        with anyio.fail_after(30):  # a hang guard only: nothing here may wait
            await bus.emit(note(3))  # full: dropped, not waited for
            await anyio.to_thread.run_sync(bus.emit_from_thread, note(4))  # dropped too
        assert bus.statistics().dropped == 2
        sink.gate.set()
    assert [e.message for e in sink.of_type(Note)] == ["0", "1", "2"]


@pytest.mark.parametrize("overflow", [None, "block", "raise"])
async def test_block_is_the_default_and_raise_its_earlier_spelling(overflow: str | None) -> None:
    sink = GatedSink()
    options = {} if overflow is None else {"overflow": overflow}
    async with EventBus([sink], capacity=1, **options) as bus:  # type: ignore[arg-type]
        await bus.emit(note(0))
        await sink.entered.wait()
        await bus.emit(note(1))  # the queue is full from here
        with pytest.raises(tracebus.QueueFullError, match=r"full \(1 events\)"):
            bus.emit_nowait(note(2))
        waited = anyio.Event()

        async def late() -> None:
            await bus.emit(note(3))
            waited.set()

        async with anyio.create_task_group() as group:
            group.start_soon(late)
            await anyio.wait_all_tasks_blocked()
            assert not waited.is_set()  # emit waits for room: nothing is dropped
            sink.gate.set()
    assert [e.message for e in sink.of_type(Note)] == ["0", "1", "3"]
    assert bus.statistics().dropped == 0


# -- a thread's emit racing the close ------------------------------------------------------


class HeldAppend(deque[Event]):
    """A queue's deque that holds the thread appending ``target``, just ``before`` or
    ``after`` the append itself, until ``release`` is set: the GIL switch at the worst
    moment, made to happen."""

    def __init__(self, target: Event, hold: Literal["before", "after"]) -> None:
        super().__init__()
        self.target, self.hold = target, hold
        self.arrived, self.release = threading.Event(), threading.Event()

    def append(self, event: Event) -> None:
        if event is self.target and self.hold == "before":
            self._wait()
        super().append(event)
        if event is self.target and self.hold == "after":
            self._wait()

    def _wait(self) -> None:
        self.arrived.set()
        self.release.wait()


def held_bus(sink: CapturingSink, target: Event, hold: Literal["before", "after"]) -> EventBus:
    bus = EventBus([sink])
    bus._queue.items = HeldAppend(target, hold)
    return bus


def held(bus: EventBus) -> HeldAppend:
    items = bus._queue.items
    assert isinstance(items, HeldAppend)
    return items


def producer(
    bus: EventBus, event: Event, errors: list[Exception], returned: threading.Event | None = None
) -> Callable[[], None]:
    def produce() -> None:
        try:
            bus.emit_from_thread(event)
        except tracebus.BusClosedError as exc:
            errors.append(exc)
        finally:
            if returned is not None:
                returned.set()

    return produce


CLOSED = "the bus is closed; the event was not accepted"


async def test_a_thread_append_after_the_writers_last_take_is_refused() -> None:
    sink, late = CapturingSink(), note(1)
    bus = held_bus(sink, late, "before")
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        async with bus:
            await bus.emit(note(0))
            tg.start_soon(anyio.to_thread.run_sync, producer(bus, late, errors))
            await anyio.to_thread.run_sync(held(bus).arrived.wait)
        # the bus closed and its writer ended while the thread was about to append
        held(bus).release.set()
    assert [str(exc) for exc in errors] == [CLOSED]
    assert [e.message for e in sink.of_type(Note)] == ["0"]
    assert bus.statistics().queued == 0


async def test_a_thread_event_queued_behind_the_closers_last_is_refused() -> None:
    sink, late = GatedSink(), note(1)
    bus, returned = held_bus(sink, late, "before"), threading.Event()
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        async with bus:
            await bus.emit(note(0))
            await sink.entered.wait()  # the writer is held, writing
            tg.start_soon(anyio.to_thread.run_sync, producer(bus, late, errors, returned))
            await anyio.to_thread.run_sync(held(bus).arrived.wait)
            tg.start_soon(bus.aclose, note(99))
            await anyio.wait_all_tasks_blocked()  # closed, with 99 queued
            assert bus.closed
            held(bus).release.set()
            await anyio.to_thread.run_sync(returned.wait)  # while the writer is still held
            sink.gate.set()
    assert [str(exc) for exc in errors] == [CLOSED]
    assert [e.message for e in sink.of_type(Note)] == ["0", "99"]
    assert bus.statistics().queued == 0


async def test_a_thread_event_queued_before_the_close_is_written_before_the_last() -> None:
    sink, early = GatedSink(), note(1)
    bus, returned = held_bus(sink, early, "after"), threading.Event()
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        async with bus:
            await bus.emit(note(0))
            await sink.entered.wait()
            tg.start_soon(anyio.to_thread.run_sync, producer(bus, early, errors, returned))
            await anyio.to_thread.run_sync(held(bus).arrived.wait)  # appended, not yet back
            tg.start_soon(bus.aclose, note(99))
            await anyio.wait_all_tasks_blocked()
            assert bus.closed
            held(bus).release.set()
            await anyio.to_thread.run_sync(returned.wait)
            sink.gate.set()
    assert errors == []
    assert [e.message for e in sink.of_type(Note)] == ["0", "1", "99"]


async def test_a_thread_event_the_writer_took_before_the_close_stays_accepted() -> None:
    sink, early = CapturingSink(), note(1)
    bus = held_bus(sink, early, "after")
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        async with bus:
            tg.start_soon(anyio.to_thread.run_sync, producer(bus, early, errors))
            await anyio.to_thread.run_sync(held(bus).arrived.wait)  # appended, not yet back
            await bus.emit(note(2))  # wakes the writer, which takes both
            await bus.wait_drained()
            await bus.aclose(note(99))
        held(bus).release.set()
    assert errors == []
    assert [e.message for e in sink.of_type(Note)] == ["1", "2", "99"]
