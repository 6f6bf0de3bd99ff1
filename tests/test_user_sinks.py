"""A user's sink that hangs, lags or fails never holds up the run's own files: it falls behind
on a bounded buffer of its own, loses (and counts) what it cannot take, and is reported at
close; the trace, log and metadata are complete."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

import tracebus
from tests.conftest import Quiet, assert_consistent_run, metadata_of, trace_of
from tracebus import Event

pytestmark = pytest.mark.anyio


class HungSink:
    """Never returns from write_batch."""

    name = "hung"

    def __init__(self) -> None:
        self.entered = 0

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.entered += 1
        await anyio.sleep_forever()


class GatedSink:
    """Takes nothing until the gate opens, then everything it holds."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.events: list[Event] = []

    async def write_batch(self, events: Sequence[Event]) -> None:
        await self.gate.wait()
        self.events.extend(events)


class BrokenSink:
    name = "broken"

    async def write_batch(self, events: Sequence[Event]) -> None:
        raise ConnectionError("the dashboard went away")


async def _nodes(obs: tracebus.Observer, count: int) -> None:
    for i in range(count):
        await obs.node_start(f"n{i}", i)
        await obs.node_success(f"n{i}", 0.01)


def _assert_complete(obs: tracebus.Observer, events: int) -> dict[str, object]:
    trace = trace_of(obs.trace_file)
    assert len(trace) == events and trace[-1]["event_type"] == "workflow_complete"
    assert len(trace_of(obs.audit_dir / "trace_00.jsonl")) == events
    metadata = metadata_of(obs.metadata_file)
    assert metadata["status"] == "complete"
    assert_consistent_run(trace, metadata)
    assert obs.log_file.read_text().count(" NODE_SUCCESS ") == (events - 2) // 2
    return metadata


async def test_a_hung_user_sink_does_not_hold_up_the_run(out: Path, quiet: Quiet) -> None:
    sink = HungSink()
    obs = quiet.Observer("wf", out, sinks=[sink], capacity=100, close_timeout=4)
    with anyio.fail_after(120):  # the run must not wait on the sink: it would, for ever
        with pytest.raises(tracebus.SinkError) as caught:
            async with obs:
                await _nodes(obs, 2_000)
    events = 4_002
    lost, error = caught.value.failures["hung"]
    assert lost == events  # it never took a batch: all it held was lost at close
    assert isinstance(error, tracebus.SinkOverflowError)
    assert "hung: 4002 event(s) not written (SinkOverflowError: fell 100 events behind" in str(
        caught.value
    )
    assert set(caught.value.failures) == {"hung"}
    metadata = _assert_complete(obs, events)
    assert metadata["write_errors"] == {
        "hung": {"events_lost": events, "error": f"SinkOverflowError: {error}"}
    }
    assert metadata["events_lost"] == 0 and metadata["events_written"] == events


async def test_a_lagging_user_sink_loses_and_counts_only_what_did_not_fit(
    out: Path, quiet: Quiet
) -> None:
    sink = GatedSink()
    obs = quiet.Observer("wf", out, sinks=[sink], capacity=300, close_timeout=60)
    with anyio.fail_after(120):
        with pytest.raises(tracebus.SinkError) as caught:
            async with obs:
                await _nodes(obs, 1_000)
                await obs.flush()  # the run's files are written; the sink still waits
                assert len(sink.events) == 0
                sink.gate.set()
    lost, _ = caught.value.failures["gated"]
    assert len(sink.events) + lost == 2_002
    assert 0 < len(sink.events) <= 300 + 2  # what its buffer held, and the run's end
    seqs = [event.seq for event in sink.events]
    assert seqs == sorted(seqs)  # in order, with a gap where it fell behind
    assert sink.events[-1].seq == 2_002  # the run's end reached it after it caught up
    _assert_complete(obs, 2_002)


async def test_a_user_sink_that_fails_is_reported_in_the_metadata(out: Path, quiet: Quiet) -> None:
    obs = quiet.Observer("wf", out, sinks=[BrokenSink()])
    with pytest.raises(tracebus.SinkError, match="broken: 22 event"):
        async with obs:
            await _nodes(obs, 10)
    metadata = _assert_complete(obs, 22)
    assert metadata["write_errors"] == {
        "broken": {"events_lost": 22, "error": "ConnectionError: the dashboard went away"}
    }


def test_a_hung_user_sink_does_not_hold_up_a_sync_observer(out: Path, quiet: Quiet) -> None:
    obs = quiet.SyncObserver("wf", out, sinks=[HungSink()], capacity=50, close_timeout=2)

    def produce() -> None:
        for i in range(1_000):
            obs.node_start(f"n{i}", i)
            obs.node_success(f"n{i}", 0.01)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the producer waits on the hung sink"
    with pytest.raises(tracebus.SinkError, match="hung: 2002 event"):
        obs.close(timeout=60)
    assert len(trace_of(obs.trace_file)) == 2_002
    assert metadata_of(obs.metadata_file)["write_errors"]["hung"]["events_lost"] == 2_002


class ClosedConsole(io.StringIO):
    def write(self, text: str) -> int:
        raise ValueError("I/O operation on closed file.")


async def test_a_console_that_fails_costs_nothing_but_the_console(out: Path) -> None:
    obs = tracebus.Observer("wf", out, progress=False, console=ClosedConsole())
    with pytest.raises(tracebus.SinkError, match=r"console: 0 event\(s\) not written"):
        async with obs:
            await _nodes(obs, 10)
    metadata = _assert_complete(obs, 22)
    assert metadata["write_errors"] == {
        "console": {"events_lost": 0, "error": "ValueError: I/O operation on closed file."}
    }
    assert "Workflow completed: wf" in obs.log_file.read_text()  # the log has the summary


class NeverOpens:
    name = "never opens"

    async def aopen(self) -> None:
        await anyio.sleep_forever()

    async def write_batch(self, events: Sequence[Event]) -> None:
        pass


async def test_a_user_sink_that_never_opens_fails_the_entry_in_bounded_time(
    out: Path, quiet: Quiet
) -> None:
    obs = quiet.Observer("wf", out, sinks=[NeverOpens()], close_timeout=2)
    with anyio.fail_after(60):  # it would wait for ever
        with pytest.raises(TimeoutError, match=r"sink never opens: aopen\(\) did not return"):
            async with obs:
                pass
