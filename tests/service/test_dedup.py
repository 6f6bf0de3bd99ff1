"""The core's part of the collector: the writer leaves out what a producer already delivered."""

from __future__ import annotations

import anyio

from tracebus import EventBus, Note
from tracebus._factory import EventFactory
from tracebus._state import RunState
from tracebus.testing import CapturingSink

from .conftest import numbered


def test_apply_leaves_out_a_producers_resent_events() -> None:
    a, b = EventFactory("wf", "r", "a"), EventFactory("wf", "r", "b")
    state = RunState("wf", "r", 0, 0.0)
    first = numbered([a.node_start("x", 0), a.node_start("y", 1)], "a")
    assert state.apply(first) == first
    resent = numbered([a.node_start("x", 0), a.node_start("y", 1), a.note("z", None, {})], "a")
    other = numbered([b.note("b1", None, {})], "b")
    local = EventFactory("wf", "r").note("local", None, {})  # no producer: stamped as ever
    kept = state.apply([*resent, *other, local])
    assert kept == [resent[2], other[0], local]
    assert state.duplicates == 2
    assert state.events == 5
    assert state.last_seq == {"a": 3, "b": 1}
    assert local.seq == 1


async def test_a_bare_bus_leaves_out_resent_events_counts_them_and_still_drains() -> None:
    events = EventFactory("wf", "r", "p")
    sink = CapturingSink()
    async with EventBus([sink]) as bus:
        for _ in range(2):  # the same three events, sent twice
            for event in numbered([events.note(str(i), None, {}) for i in range(3)], "p"):
                await bus.emit(event)
        with anyio.fail_after(5):
            await bus.wait_drained()
        stats = bus.statistics()
    assert [e.message for e in sink.of_type(Note)] == ["0", "1", "2"]
    assert (stats.emitted, stats.written, stats.duplicates) == (6, 3, 3)
    assert bus.stamper.last_seq == {"p": 3}
