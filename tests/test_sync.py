from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest

import tracebus
from tests.conftest import Quiet, assert_consistent_run, metadata_of, trace_of
from tracebus import Event


def test_thread_pool_of_eight_loses_nothing(out: Path, quiet: Quiet) -> None:
    nodes = 4_000
    with quiet.SyncObserver("wf", out, total_nodes=nodes) as obs:

        def run_node(i: int) -> None:
            obs.node_start(f"n{i}", i)
            obs.node_success(f"n{i}", 0.01, output_hash=tracebus.hash_output(i), cost_usd=0.001)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(run_node, range(nodes)))
    trace = trace_of(obs.trace_file)
    metadata = metadata_of(obs.metadata_file)
    assert_consistent_run(trace, metadata)
    assert metadata["nodes_completed"] == nodes
    assert metadata["cumulative_cost_usd"] == pytest.approx(nodes * 0.001)
    assert len({e["node_id"] for e in trace if e["event_type"] == "node_success"}) == nodes


def test_with_block_that_raises_records_workflow_error(out: Path, quiet: Quiet) -> None:
    with pytest.raises(ZeroDivisionError):
        with quiet.SyncObserver("wf", out) as obs:
            obs.node_start("a", 0)
            1 / 0  # noqa: B018
    trace = trace_of(obs.trace_file)
    assert trace[-1]["event_type"] == "workflow_error"
    assert trace[-1]["error"] == "ZeroDivisionError: division by zero"
    assert obs.metadata is not None and obs.metadata["status"] == "error"


def test_flush_writes_metadata_while_the_run_goes_on(out: Path, quiet: Quiet) -> None:
    obs = quiet.SyncObserver("wf", out)
    obs.node_success("a", 0.1)
    obs.flush()
    assert metadata_of(obs.metadata_file)["nodes_completed"] == 1
    assert metadata_of(obs.metadata_file)["status"] == "incomplete"
    obs.node_success("b", 0.1)
    obs.close()
    obs.close()  # idempotent
    assert metadata_of(obs.metadata_file)["nodes_completed"] == 2
    with pytest.raises(tracebus.BusClosedError):
        obs.node_start("late", 0)


def test_sync_observer_runs_on_trio_too(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out, backend="trio") as obs:
        obs.node_start("a", 0)
        obs.node_success("a", 0.1)
    assert [e["event_type"] for e in trace_of(obs.trace_file)] == [
        "workflow_start",
        "node_start",
        "node_success",
        "workflow_complete",
    ]


def test_unwritable_output_dir_raises_at_construction(tmp_path: Path, quiet: Quiet) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        quiet.SyncObserver("wf", blocker / "runs")


UNCLOSED = textwrap.dedent(
    """
    import sys, tracebus
    obs = tracebus.SyncObserver("wf", sys.argv[1], progress=False, console=None)
    for i in range(1000):
        obs.node_start(f"n{i}", i)
        obs.node_success(f"n{i}", 0.0)
    print(obs.trace_file)
    """
)


def test_unclosed_observer_is_flushed_at_exit(out: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", UNCLOSED, str(out)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    trace = trace_of(Path(result.stdout.strip()))
    assert len(trace) == 2002
    assert trace[-1]["event_type"] == "workflow_complete"


def _bytes_written_by(thread: threading.Thread) -> int:
    """What ``thread`` has handed to write calls so far (Linux's per-thread I/O counters)."""
    counters = Path(f"/proc/self/task/{thread.native_id}/io").read_text().split()
    return int(counters[counters.index("wchar:") + 1])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_batches_are_written_on_the_observers_own_thread(
    out: Path, backend: Literal["asyncio", "trio"], quiet: Quiet
) -> None:
    # Its loop serves the run alone: a trip to a worker thread per batch would only add
    # wake-ups and GIL hand-offs between threads.
    nodes = 300
    with quiet.SyncObserver("wf", out, total_nodes=nodes, backend=backend) as obs:

        def run_node(i: int) -> None:
            obs.node_start(f"n{i}", i)
            obs.node_success(f"n{i}", 0.01)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(run_node, range(nodes)))
        obs.flush()
        (loop,) = (t for t in threading.enumerate() if t.name == f"tracebus-{obs.run_id}")
        files_size = obs.trace_file.stat().st_size + obs.log_file.stat().st_size
        assert _bytes_written_by(loop) >= files_size
    trace = trace_of(obs.trace_file)
    assert len(trace) == 2 * nodes + 2
    assert_consistent_run(trace, metadata_of(obs.metadata_file))


def test_each_threads_events_keep_their_order_under_backpressure(out: Path, quiet: Quiet) -> None:
    threads, notes = 8, 400
    with quiet.SyncObserver("wf", out, capacity=16) as obs:

        def produce(thread: int) -> None:
            for k in range(notes):
                obs.note("tick", thread=thread, k=k)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(produce, range(threads)))
    ticks = [e for e in trace_of(obs.trace_file) if e["event_type"] == "note"]
    assert len(ticks) == threads * notes
    for thread in range(threads):
        mine = [e["fields"]["k"] for e in ticks if e["fields"]["thread"] == thread]
        assert mine == list(range(notes))
    assert metadata_of(obs.metadata_file)["events_written"] == threads * notes + 2


class _HoldingSink:
    """Holds the observer's loop thread in write_batch until the gate opens, as a write to a
    stalled disk would."""

    name = "holding"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.closed = threading.Event()

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.entered.set()
        if not self.gate.wait(20):  # blocks the loop's thread, not just this task
            self.gate.set()  # the test's guard: it never opened the gate

    async def aclose(self) -> None:
        self.closed.set()


def test_close_with_a_timeout_returns_while_the_loop_thread_is_held(
    out: Path, quiet: Quiet
) -> None:
    sink = _HoldingSink()
    obs = quiet.SyncObserver("wf", out, sinks=[sink])
    obs.node_start("a", 0)
    assert sink.entered.wait(30)
    try:
        obs.close(timeout=0.2)
    except tracebus.CloseTimeoutError:
        pass
    returned_while_held = not sink.gate.is_set()
    sink.gate.set()
    assert returned_while_held
    assert sink.closed.wait(30)  # the run went on closing in its thread: nothing lost
    assert [e["event_type"] for e in trace_of(obs.trace_file)] == [
        "workflow_start",
        "node_start",
        "workflow_complete",
    ]


NEVER_CLOSED = textwrap.dedent(
    """
    import sys, tracebus
    out, backend, end_on_close = sys.argv[1], sys.argv[2], sys.argv[3] == "end"
    obs = tracebus.SyncObserver(
        "step_03_exit", out, total_nodes=3, progress=False, console=None, backend=backend,
        end_on_close=end_on_close,
    )
    obs.node_start("a", 0)
    obs.node_success("a", 0.5)
    obs.node_start("b", 1)
    obs.node_failure("b", "ValueError: bad", 0.25)
    obs.node_start("c", 2)
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("end_on_close", [False, True])
def test_never_closed_observer_writes_its_metadata_at_exit(
    out: Path, backend: str, end_on_close: bool
) -> None:
    """The exit hook closes the run without starting a thread (Python 3.12 refuses new
    threads once the main thread has finished): metadata, fsynced files, nothing on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", NEVER_CLOSED, str(out), backend, "end" if end_on_close else "-"],
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard only: the exit hook is bounded by exit_timeout (5s)
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    metadata = metadata_of(out / "audit" / "step_03" / "metadata_03.json")
    assert metadata["status"] == ("complete" if end_on_close else "incomplete")
    assert (metadata["nodes_completed"], metadata["nodes_failed"]) == (1, 1)
    trace = trace_of(out / "audit" / "step_03" / "trace_03.jsonl")
    assert metadata["events_written"] == len(trace) == (7 if end_on_close else 6)
    assert (trace[-1]["event_type"] == "workflow_complete") is end_on_close


class LoopBlockingSink:
    """A user sink whose first write_batch blocks the observer's event loop itself until the
    test thread opens a gate: the writer stops, and the queue fills."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    async def write_batch(self, events: Sequence[tracebus.Event]) -> None:
        self.entered.set()
        self.gate.wait()


def test_overflow_drop_drops_and_counts_instead_of_blocking(out: Path, quiet: Quiet) -> None:
    sink = LoopBlockingSink()
    obs = quiet.SyncObserver("wf", out, sinks=[sink], capacity=4, overflow="drop")
    try:
        assert sink.entered.wait(timeout=60)  # workflow_start written: the queue is empty
        for i in range(10):
            obs.node_start(f"n{i}", i)  # the first four fit, the rest are dropped
        assert obs.statistics().dropped == 6
    finally:
        sink.gate.set()
    obs.node_failure("n9", "kept", 0.1)  # a lifecycle event: never dropped (it waits)
    obs.close()
    trace = trace_of(obs.trace_file)
    assert [e.get("node_id") for e in trace] == [None, "n0", "n1", "n2", "n3", "n9", None]
    assert metadata_of(obs.metadata_file)["events_dropped"] == 6


def test_close_while_threads_emit_keeps_every_accepted_event_in_order(
    out: Path, quiet: Quiet
) -> None:
    threads = 8
    accepted: list[int] = [0] * threads
    refused: list[BaseException | None] = [None] * threads
    running = threading.Barrier(threads + 1)
    obs = quiet.SyncObserver("wf", out)

    def produce(thread: int) -> None:
        running.wait()
        try:
            while True:
                obs.note("tick", thread=thread, k=accepted[thread])
                accepted[thread] += 1  # only once the call returned: the event is queued
        except tracebus.BusClosedError as exc:
            refused[thread] = exc

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    running.wait()
    obs.flush()  # some written while the threads go on emitting
    obs.close()
    for worker in workers:
        worker.join()
    assert all(isinstance(exc, tracebus.BusClosedError) for exc in refused)
    trace = trace_of(obs.trace_file)
    ticks = [e for e in trace if e["event_type"] == "note"]
    for thread in range(threads):
        mine = [e["fields"]["k"] for e in ticks if e["fields"]["thread"] == thread]
        assert mine == list(range(accepted[thread]))
    assert len(ticks) == sum(accepted) > 0
    assert metadata_of(obs.metadata_file)["events_written"] == len(trace)


def test_overflow_drop_from_threads_counts_what_it_drops(out: Path, quiet: Quiet) -> None:
    threads, notes = 8, 1_000
    with quiet.SyncObserver("wf", out, capacity=32, overflow="drop") as obs:

        def produce(thread: int) -> None:
            for k in range(notes):
                obs.note("tick", thread=thread, k=k)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(produce, range(threads)))
        obs.flush()
        dropped = obs.statistics().dropped
    trace = trace_of(obs.trace_file)
    ticks = [e for e in trace if e["event_type"] == "note"]
    assert len(ticks) + dropped == threads * notes
    for thread in range(threads):
        mine = [e["fields"]["k"] for e in ticks if e["fields"]["thread"] == thread]
        assert mine == sorted(set(mine))  # what was kept, in call order
    assert [trace[0]["event_type"], trace[-1]["event_type"]] == [
        "workflow_start",
        "workflow_complete",
    ]
    metadata = metadata_of(obs.metadata_file)
    assert (metadata["events_dropped"], metadata["events_written"]) == (dropped, len(trace))


def test_flush_from_a_thread_writes_what_other_threads_emitted(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out) as obs:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: obs.node_start(f"n{i}", i), range(400)))
        for round_ in range(20):  # each flush finds the writer idle or between two batches
            obs.note("round", k=round_)
            obs.flush()
            assert len(trace_of(obs.trace_file)) == 1 + 400 + round_ + 1


REFUSALS = {
    "the observer is closed; the event was not accepted",
    "the bus is closed; the event was not accepted",
}


def _race_a_close(out: Path, quiet: Quiet, threads: int) -> None:
    """``threads`` threads emit until refused while the observer closes; checks the trace."""
    accepted: list[int] = [0] * threads
    refused: list[BaseException | None] = [None] * threads
    started = threading.Barrier(threads + 1)
    warm = threading.Event()
    obs = quiet.SyncObserver("wf", out)

    def produce(thread: int) -> None:
        started.wait()
        try:
            while True:
                obs.note("tick", thread=thread, k=accepted[thread])
                accepted[thread] += 1  # only once the call returned
                if accepted[thread] == 50:
                    warm.set()
        except Exception as exc:  # noqa: BLE001 - asserted below
            refused[thread] = exc

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    started.wait()
    warm.wait()
    obs.close()
    for worker in workers:
        worker.join()
    for exc in refused:
        assert isinstance(exc, tracebus.BusClosedError) and str(exc) in REFUSALS
    trace = trace_of(obs.trace_file)
    assert trace[-1]["event_type"] == "workflow_complete"
    assert [e["event_type"] for e in trace].count("workflow_complete") == 1
    ticks = [e for e in trace if e["event_type"] == "note"]
    for thread in range(threads):
        mine = [e["fields"]["k"] for e in ticks if e["fields"]["thread"] == thread]
        assert mine == list(range(accepted[thread]))
    assert metadata_of(obs.metadata_file)["events_written"] == len(trace)


def test_close_racing_eight_threads_keeps_every_returned_event_before_the_end(
    out: Path, quiet: Quiet
) -> None:
    for round_ in range(6):
        _race_a_close(out / str(round_), quiet, threads=8)
