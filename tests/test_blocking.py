"""The blocking twin written once: any async observer, hosted on a loop thread of its own."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import pytest

import tracebus
from tests.conftest import Quiet, trace_of
from tracebus import BusStatistics, Event, EventBus
from tracebus._blocking import BlockingObserver, ThreadProducer
from tracebus._factory import EventFactory
from tracebus.testing import CapturingSink


class BareObserver:
    """An async observer that is not tracebus's own: a bus into a capturing sink, which
    records on leaving what it was left with."""

    def __init__(self) -> None:
        self.workflow_id, self.run_id = "wf", "r1"
        self.events = EventFactory(self.workflow_id, self.run_id)
        self.sink = CapturingSink()
        self.bus = EventBus([self.sink])
        self.left_with: BaseException | None = None
        self.loop_thread: str | None = None
        self.finished = False

    def mark_finished(self) -> None:
        self.finished = True

    def put_from_thread(self, event: Event) -> None:
        self.bus.emit_from_thread(event)

    def put_droppable(self, event: Event) -> None:
        self.bus.emit_droppable(event)

    async def flush(self) -> None:
        await self.bus.wait_drained()

    def statistics(self) -> BusStatistics:
        return self.bus.statistics()

    async def __aenter__(self) -> BareObserver:
        self.loop_thread = threading.current_thread().name
        await self.bus.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.left_with = exc
        await self.bus.__aexit__(exc_type, exc, tb)


def test_any_async_observer_becomes_blocking_on_a_thread_of_its_own() -> None:
    bare = BareObserver()
    with BlockingObserver(bare, name="bare-loop", backend="asyncio", exit_timeout=5) as obs:
        threads = [threading.Thread(target=obs.node_success, args=(f"n{i}", 0.1)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        obs.flush()
        assert len(bare.sink.events) == 8
        obs.note("last", step=1)
    assert obs.closed and bare.loop_thread == "bare-loop"
    assert bare.left_with is None
    assert sorted(e.seq for e in bare.sink.events) == list(range(1, 10))
    assert bare.sink.types()[-1] == "note"


def test_the_with_blocks_error_reaches_the_async_observer() -> None:
    bare = BareObserver()
    with pytest.raises(KeyError):
        with BlockingObserver(bare, name="bare-loop", backend="trio", exit_timeout=5) as obs:
            obs.workflow_complete()
            raise KeyError("k")
    assert isinstance(bare.left_with, KeyError)
    assert bare.finished
    assert bare.sink.types() == ["workflow_complete"]


def test_a_call_after_close_is_refused_naming_the_observer() -> None:
    obs = BlockingObserver(BareObserver(), name="bare-loop", backend="asyncio", exit_timeout=5)
    obs.close()
    obs.close()
    with pytest.raises(tracebus.BusClosedError, match="the observer is closed"):
        obs.node_start("late")


def test_sync_observer_ending_in_error_after_its_end_records_one_end(
    out: Path, quiet: Quiet
) -> None:
    """As ``async with Observer`` does: the run's end was recorded, the error adds none."""
    with pytest.raises(ZeroDivisionError):
        with quiet.SyncObserver("wf", out) as obs:
            obs.workflow_complete()
            1 / 0  # noqa: B018
    assert [e["event_type"] for e in trace_of(obs.trace_file)] == [
        "workflow_start",
        "workflow_complete",
    ]


def test_the_sync_observer_is_not_a_thread_producer() -> None:
    assert not issubclass(tracebus.SyncObserver, ThreadProducer)
