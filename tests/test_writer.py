"""The writer: batches a step at a time, stamps, has sinks prepare, feeds sinks and
subscribers, and closes within its bound, reporting what a sink did not take."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import tracebus
from tests.conftest import GatedSink, note
from tracebus import Event, EventBus, Note
from tracebus._stamping import IsoClock
from tracebus._writer import STEP_EVENTS
from tracebus.testing import CapturingSink

pytestmark = pytest.mark.anyio


class FailingSink:
    name = "flaky"

    async def write_batch(self, events: Sequence[Event]) -> None:
        raise OSError(28, "No space left on device")


class BatchSizes(CapturingSink):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.sizes.append(len(events))
        await super().write_batch(events)


# asyncio runs every ready task in turn; trio runs them in a random order each round, so a
# task may see two of the writer's steps between two of its own turns there.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
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
    assert [int(e.message) for e in sink.of_type(Note)] == list(range(2_500))


async def test_a_trickle_of_events_is_written_as_it_comes() -> None:
    sink = BatchSizes()
    async with EventBus([sink]) as bus:
        for i in range(50):
            await bus.emit(note(i))
            await anyio.sleep(0.001)
    assert len(sink.events) == 50 and max(sink.sizes) <= 2


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
                    assert isinstance(event, Note)
                    received.append(event.message)

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
    got = [e async for e in subscription]
    assert got == sink.events[:3]
    assert [e.message for e in sink.of_type(Note)[:3]] == ["0", "1", "2"]


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
    assert [e.message for e in other.of_type(Note)] == ["0", "2", "4"]
    assert [e.message for e in refusing.of_type(Note)] == ["0", "2", "4"]
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
    assert [e.message for e in other.of_type(Note)] == ["0", "2"]
    assert "refusing" in str(raised.value) and "cannot prepare boom" in str(raised.value)


class InParts(CapturingSink):
    """Prepares each step in three parts, recording how far a task on the same loop got by
    then; a part fails on a note saying so."""

    name = "in parts"

    def __init__(self, progress: list[int]) -> None:
        super().__init__()
        self.parts_left = 0
        self.seen_at_parts: list[int] = []
        self._progress = progress
        self._failing = False

    def prepare(self, events: list[Event]) -> list[Event]:
        self.parts_left = 3
        self._failing = any(getattr(e, "message", "") == "fail" for e in events)
        return events

    def prepare_more(self) -> bool:
        if not self.parts_left:
            return False
        self.parts_left -= 1
        self.seen_at_parts.append(self._progress[0])
        if self._failing and not self.parts_left:
            raise ValueError("cannot finish the step")
        return True

    async def write_batch(self, events: Sequence[Event]) -> None:
        assert not self.parts_left, "written before its parts were prepared"
        await super().write_batch(events)


async def test_a_step_prepared_in_parts_lets_the_loop_run_between_them() -> None:
    progress = [0]
    sink, other = InParts(progress), CapturingSink()
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            progress[0] += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker)
        with pytest.raises(tracebus.SinkError) as raised:
            async with EventBus([sink, other]) as bus:
                await bus.emit(note(0))
                await bus.wait_drained()
                await bus.emit(
                    Note(epoch_seconds=1.0, pid=1, workflow_id="w", run_id="r", message="fail")
                )
                await bus.wait_drained()
                await bus.emit(note(2))
                await bus.wait_drained()
        done.set()
    assert len(sink.seen_at_parts) == 9  # three steps (one event each), three parts each
    first = sink.seen_at_parts[:3]
    assert first[0] < first[2], "the ticker ran between the parts"
    assert [e.message for e in other.of_type(Note)] == ["0", "2"]  # the failed step is lost
    assert "in parts" in str(raised.value) and "cannot finish the step" in str(raised.value)
