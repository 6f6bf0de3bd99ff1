from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import tracebus
from tracebus import Event, EventBus, Note
from tracebus._stamping import IsoClock
from tracebus._writer import STEP_EVENTS
from tracebus.testing import CapturingSink


def note(i: int) -> Note:
    return Note(epoch_seconds=time.time(), pid=1, workflow_id="wf", run_id="r", message=str(i))


class GatedSink:
    """Blocks in write_batch until the gate opens: stands for a slow disk."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.entered = anyio.Event()
        self.events: list[Event] = []

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.entered.set()
        await self.gate.wait()
        self.events.extend(events)


class FailingSink:
    name = "flaky"

    async def write_batch(self, events: Sequence[Event]) -> None:
        raise OSError(28, "No space left on device")


async def test_events_reach_the_sink_in_emit_order() -> None:
    sink = CapturingSink()
    async with EventBus([sink]) as bus:
        for i in range(1_000):
            await bus.emit(note(i))
    assert [int(e.message) for e in sink.events] == list(range(1_000))  # type: ignore[attr-defined]
    assert bus.statistics().written == 1_000


class BatchSizes(CapturingSink):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.sizes.append(len(events))
        await super().write_batch(events)


async def test_a_backlog_is_written_in_large_batches_prepared_a_step_at_a_time() -> None:
    steps: list[int] = []
    ticks_at_step: list[int] = []
    ticks = 0

    class PreparedSizes(BatchSizes):
        def prepare(self, events: list[Event]) -> list[Event]:
            steps.append(len(events))
            ticks_at_step.append(ticks)
            return events

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    sink = PreparedSizes()
    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        async with EventBus([sink], capacity=3_000, max_batch=1_000) as bus:
            for i in range(2_500):  # no checkpoint: a backlog the writer finds all at once
                bus.emit_nowait(note(i))
            await bus.wait_drained()
        group.cancel_scope.cancel()
    assert sink.sizes == [1_000, 1_000, 500]

    def steps_of(batch: int) -> list[int]:
        full, rest = divmod(batch, STEP_EVENTS)
        return [STEP_EVENTS] * full + ([rest] if rest else [])

    assert steps == steps_of(1_000) + steps_of(1_000) + steps_of(500)
    # other tasks ran between every two steps: the writer never held the loop for a batch
    assert all(b > a for a, b in zip(ticks_at_step, ticks_at_step[1:], strict=False))
    assert [int(e.message) for e in sink.events] == list(range(2_500))  # type: ignore[attr-defined]


async def test_a_trickle_of_events_is_written_as_it_comes() -> None:
    sink = BatchSizes()
    async with EventBus([sink]) as bus:
        for i in range(50):
            await bus.emit(note(i))
            await anyio.sleep(0.001)
    assert len(sink.events) == 50 and max(sink.sizes) <= 2


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
    assert [int(e.message) for e in sink.events] == [0, 1, 2]  # type: ignore[attr-defined]
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
    assert [e.message for e in sink.events] == ["0", "1", "2", "3"]  # type: ignore[attr-defined]


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


async def test_failing_sink_does_not_stop_the_others_and_close_reports_it() -> None:
    good = CapturingSink()
    with pytest.raises(tracebus.SinkError) as caught:
        async with EventBus([FailingSink(), good]) as bus:
            for i in range(10):
                await bus.emit(note(i))
                await anyio.lowlevel.checkpoint()
    assert len(good.events) == 10
    lost, error = caught.value.failures["flaky"]
    assert lost == 10
    assert "No space left on device" in str(error)
    assert "flaky: 10 event(s) not written" in str(caught.value)


async def test_close_is_bounded_and_reports_what_was_not_written() -> None:
    sink = GatedSink()  # never opened: the writer hangs in write_batch
    with pytest.raises(tracebus.CloseTimeoutError) as caught:
        async with EventBus([sink], close_timeout=0.2) as bus:
            for i in range(5):
                bus.emit_nowait(note(i))
    assert caught.value.unwritten == 5
    assert "close timed out after 0.2s with 5 event(s) not written" in str(caught.value)


async def test_subscriber_sees_events_emitted_after_it_subscribed() -> None:
    async with EventBus([CapturingSink()]) as bus:
        bus.emit_nowait(note(0))  # queued before subscribing: not delivered
        received: list[str] = []
        subscription = bus.subscribe()
        for i in range(1, 4):
            bus.emit_nowait(note(i))
        async with anyio.create_task_group() as tg:

            async def drain() -> None:
                async for event in subscription:
                    received.append(event.message)  # type: ignore[attr-defined]

            tg.start_soon(drain)
            await bus.aclose()
    assert received == ["1", "2", "3"]


async def test_slow_subscriber_is_counted_and_never_stalls_the_writer() -> None:
    sink = CapturingSink()
    async with EventBus([sink]) as bus:
        subscription = bus.subscribe(max_buffer=3)
        for i in range(10):
            bus.emit_nowait(note(i))
        await bus.wait_drained()
        assert len(sink.events) == 10
        assert bus.statistics().subscriber_dropped == 7
    got = [e.message async for e in subscription]  # type: ignore[attr-defined]
    assert got == ["0", "1", "2"]


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
        mine = [int(e.message) for e in sink.events if e.pid == worker]  # type: ignore[attr-defined]
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
    assert [e.message for e in sink.events] == ["0", "1"]  # type: ignore[attr-defined]


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
        outcome.extend([scope.cancelled_caught, sink.closed, [e.message for e in sink.events]])

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


async def test_a_bare_bus_stamps_seq_and_timestamp_in_write_order() -> None:
    sink = CapturingSink()
    given = note(99)
    given.seq, given.timestamp = 41, "kept as sent"
    async with EventBus([sink]) as bus:
        seen = bus.subscribe()
        for i in range(STEP_EVENTS * 3):
            await bus.emit(note(i))
        await bus.emit(given)
        first = await seen.__anext__()
        await seen.aclose()  # type: ignore[attr-defined]
    stamped = sink.events[:-1]
    assert [e.seq for e in stamped] == list(range(1, STEP_EVENTS * 3 + 1))
    assert all(e.timestamp == IsoClock()(e.epoch_seconds) for e in stamped)
    assert (sink.events[-1].seq, sink.events[-1].timestamp) == (41, "kept as sent")
    assert (first.seq, first.timestamp) == (1, stamped[0].timestamp)  # subscribers too


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
    assert [e.message for e in sink.events] == ["0", "1", "2"]  # type: ignore[attr-defined]


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
    assert [e.message for e in sink.events] == ["0", "1", "3"]  # type: ignore[attr-defined]
    assert bus.statistics().dropped == 0


class Refusing(CapturingSink):
    """Prepares each step: sees it stamped, refuses the odd-numbered notes, fails on "boom"."""

    name = "refusing"

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[tuple[int, str]] = []

    def prepare(self, events: list[Event]) -> list[Event]:
        if any(getattr(e, "message", "") == "boom" for e in events):
            raise ValueError("cannot prepare boom")
        self.prepared += [(e.seq, e.timestamp) for e in events]
        return [e for e in events if int(getattr(e, "message", 0)) % 2 == 0]


async def test_a_sink_prepares_stamped_steps_and_what_it_refuses_reaches_no_sink() -> None:
    refusing, other = Refusing(), CapturingSink()
    async with EventBus([refusing, other]) as bus:
        for i in range(6):
            await bus.emit(note(i))
        await bus.wait_drained()
        stats = bus.statistics()
    assert [seq for seq, _ in refusing.prepared] == [1, 2, 3, 4, 5, 6]
    assert all(timestamp for _, timestamp in refusing.prepared)
    assert [e.message for e in other.events] == ["0", "2", "4"]  # type: ignore[attr-defined]
    assert [e.message for e in refusing.events] == ["0", "2", "4"]  # type: ignore[attr-defined]
    assert (stats.written, stats.duplicates) == (3, 3)


async def test_a_prepare_that_fails_loses_its_step_and_is_reported_by_the_sinks_name() -> None:
    other = CapturingSink()
    with pytest.raises(tracebus.SinkError) as raised:
        async with EventBus([Refusing(), other]) as bus:
            await bus.emit(note(0))
            await bus.wait_drained()
            await bus.emit(
                Note(epoch_seconds=1.0, pid=1, workflow_id="w", run_id="r", message="boom")
            )
            await bus.wait_drained()
            await bus.emit(note(2))
    assert [e.message for e in other.events] == ["0", "2"]  # type: ignore[attr-defined]
    assert "refusing" in str(raised.value) and "cannot prepare boom" in str(raised.value)
