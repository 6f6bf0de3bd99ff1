"""Memory stays flat in the number of events: every per-node and per-subscriber structure is
bounded or released. (``benchmarks/memory.py`` shows RSS over millions of events.)"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import metadata_of
from tracebus import EventBus, Note
from tracebus._factory import EventFactory
from tracebus._state import MAX_NODE_DETAILS, RunState
from tracebus.compat import ExecutionObserver
from tracebus.testing import CapturingSink

pytestmark = pytest.mark.anyio


def note(i: int) -> Note:
    return Note(epoch_seconds=time.time(), pid=1, workflow_id="wf", run_id="r", message=str(i))


def _sizes(state: RunState) -> dict[str, int]:
    return {
        name: len(value)
        for name, value in vars(state).items()
        if isinstance(value, dict | list | set | tuple)
    }


def test_every_per_node_table_of_the_run_state_is_bounded() -> None:
    cap = 10
    events = EventFactory("wf", "r")
    state = RunState("wf", "r", 0, 0.0, max_node_details=cap)
    for i in range(1_000):
        state.apply(
            [
                events.node_start(f"never-ends-{i}", i),
                events.node_start(f"fails-{i}", i),
                events.node_failure(f"fails-{i}", f"error text {i} " * 20, 0.5, 0.01),
                events.node_start(f"skipped-{i}", i),
                events.node_skipped(f"skipped-{i}", "why"),
                events.node_retry(f"retried-{i}", 2, "again"),
                events.node_success(f"ok-{i}", 0.1, None, None, 0.0),
            ]
        )
    assert state.nodes_failed == 1_000 and state.nodes_completed == 1_000
    sizes = _sizes(state)
    assert sizes and max(sizes.values()) <= cap, sizes
    assert state.peak_in_flight == cap
    assert state.node_details_dropped == 2 * 1_000 - cap


async def test_subscribers_that_break_out_are_released() -> None:
    sink = CapturingSink()
    async with EventBus([sink]) as bus:
        ready = anyio.Event()
        left = 0

        async def subscriber() -> None:
            nonlocal left
            async for _ in bus.subscribe(max_buffer=1):
                break  # the first event is enough for this one
            left += 1
            if left == 100:
                ready.set()

        async with anyio.create_task_group() as group:
            for _ in range(100):
                group.start_soon(subscriber)
            await anyio.wait_all_tasks_blocked()
            assert bus.statistics().subscribers == 100
            bus.emit_nowait(note(0))
            await ready.wait()
        for i in range(1, 1_000):
            bus.emit_nowait(note(i))
            if i % 100 == 0:
                await anyio.lowlevel.checkpoint()
        await bus.wait_drained()
        stats = bus.statistics()
        assert stats.subscribers == 0
        assert stats.subscriber_dropped == 0  # nothing was kept, or dropped, for them
        abandoned = bus.subscribe()
        assert bus.statistics().subscribers == 1
        del abandoned  # never iterated: released all the same
        bus.emit_nowait(note(1_000))
        await bus.wait_drained()
        assert bus.statistics().subscribers == 0
    assert len(sink.events) == 1_001


def test_the_compat_observer_keeps_per_node_figures_of_the_first_nodes_only(
    tmp_path: Path,
) -> None:
    obs = ExecutionObserver("wf", str(tmp_path / "out"), 0, use_tqdm=False)
    nodes = MAX_NODE_DETAILS + 50
    for i in range(nodes):
        obs.node_failure(f"n{i}", "boom", 0.001)
    obs.node_success("last", 0.5, output_summary={"rows": 1})
    obs.workflow_complete()
    assert obs.nodes_failed == nodes and obs.nodes_completed == 1
    assert len(obs.node_times) == MAX_NODE_DETAILS
    assert "n0" in obs.node_times and "last" not in obs.node_times
    assert obs.node_outputs == {"last": {"rows": 1}}  # a table of its own, as bounded
    metadata = metadata_of(obs.audit_dir / "metadata_00.json")
    assert metadata["nodes_failed"] == nodes
    assert metadata["node_details_dropped"] == 51
