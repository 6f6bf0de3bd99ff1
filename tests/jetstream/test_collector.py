"""The JetStream collector against the real server: every event written once, whatever
JetStream redelivers or the publishers resend."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from nats.js.client import JetStreamContext

import tracebus
from tracebus._events import Event
from tracebus._factory import EventFactory
from tracebus._nats._collector import NatsCollector
from tracebus._nats._connection import ensure_stream
from tracebus._nats._settings import NatsSettings
from tracebus._service._protocol import Batch, encode

from .conftest import (
    DEADLINE,
    Collector,
    run_producers,
    trace_lines,
    wait_for_metadata,
)


def assert_each_event_once(trace: list[dict[str, object]], expected: dict[str, int]) -> None:
    """Each producer's events are seq 1..n, each exactly once, in order."""
    per_producer: dict[str, list[int]] = {}
    for event in trace:
        per_producer.setdefault(str(event["producer"]), []).append(int(str(event["seq"])))
    assert {p: len(s) for p, s in per_producer.items()} == expected
    for seqs in per_producer.values():
        assert seqs == list(range(1, len(seqs) + 1))


async def test_four_publisher_processes_into_one_run_write_every_event_once(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    out = tmp_path / "out"
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    async with tracebus.connect(shared, "wf-many", 40_000, run_id="run-1", producer="lead"):
        run_producers(shared, "wf-many", "run-1", [20_000] * 4)
    metadata = wait_for_metadata(out)
    trace = trace_lines(out)
    assert_each_event_once(
        trace, {"lead": 2, "w0": 20_000, "w1": 20_000, "w2": 20_000, "w3": 20_000}
    )
    assert metadata["events_written"] == len(trace) == 80_002
    assert metadata["nodes_completed"] == 40_000
    collector.stop()


async def test_a_fetch_that_times_out_with_asyncios_error_is_retried(
    shared: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's fetch raises asyncio's TimeoutError, not its own, when its wait ran out
    before the pull request went out (seen on a busy machine): the collector fetches again
    instead of stopping."""
    async with tracebus.connect(shared, "wf-slow", 3, run_id="run-1", producer="p1") as obs:
        for index in range(3):
            await obs.node_start(f"n{index}", index)
            await obs.node_success(f"n{index}", 0.001)
    fetch = JetStreamContext.PullSubscription.fetch
    timeouts = 0

    async def fetch_timing_out_twice(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal timeouts
        if timeouts < 2:
            timeouts += 1
            raise TimeoutError
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", fetch_timing_out_twice)
    out = tmp_path / "out"
    async with anyio.create_task_group() as tasks:
        await tasks.start(NatsCollector(shared, out).run)
        metadata = await anyio.to_thread.run_sync(wait_for_metadata, out, abandon_on_cancel=True)
        tasks.cancel_scope.cancel()
    assert timeouts == 2
    assert_each_event_once(trace_lines(out), {"p1": 8})
    assert metadata["events_written"] == 8


async def test_collector_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    out = tmp_path / "out"
    async with tracebus.connect(shared, "wf-kill", 50_000, run_id="run-1", producer="p1") as obs:
        for index in range(50_000):
            await obs.node_start(f"n{index}", index)
            await obs.node_success(f"n{index}", 0.001)
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    traces = out / "traces"
    deadline = time.monotonic() + DEADLINE
    while not any(t.stat().st_size > 500_000 for t in traces.glob("*.jsonl")):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    collector.kill()
    assert not list(out.glob("audit/step_*/metadata_*.json")), "the run ended before the kill"
    partial = len(next(traces.glob("*.jsonl")).read_bytes().splitlines())
    assert 0 < partial < 100_002

    collector.start()
    metadata = wait_for_metadata(out)
    trace = trace_lines(out)
    assert_each_event_once(trace, {"p1": 100_002})
    assert metadata["events_written"] == 100_002
    assert metadata["nodes_completed"] == 50_000
    assert (out / "audit").exists()
    collector.stop()


async def test_republished_batch_is_written_once(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    """The same batch sent again: with its Msg-Id inside the duplicate window (the server
    drops it), and under a new Msg-Id (as after the window: the writer drops it); a later
    batch stored before an earlier one is written after it."""
    stream = shared.stream
    subject = stream.subject("wf.dup", "run.1")
    events = EventFactory("wf.dup", "run.1", "p1")
    batches: list[list[Event]] = [
        [events.workflow_start(3, "")],
        [],
        [],
        [events.workflow_complete(None)],
    ]
    for index in range(3):
        batches[1 + index // 2].append(events.node_start(f"n{index}", index))
    seq = 0
    for batch in batches:
        for event in batch:
            seq += 1
            event.seq = seq
    client = await nats.connect(shared.servers[0])
    try:
        js = client.jetstream()
        await ensure_stream(js, stream)
        bodies = [
            encode(Batch(id=index + 1, workflow_id="wf.dup", run_id="run.1", events=batch))  # type: ignore[arg-type]
            for index, batch in enumerate(batches)
        ]
        ids = [f"run.1:p1:{batch[0].seq}" for batch in batches]
        first = await js.publish(subject, bodies[0], headers={"Nats-Msg-Id": ids[0]})
        again = await js.publish(subject, bodies[0], headers={"Nats-Msg-Id": ids[0]})
        assert again.duplicate and again.seq == first.seq
        await js.publish(subject, bodies[2], headers={"Nats-Msg-Id": ids[2]})
        await js.publish(subject, bodies[1], headers={"Nats-Msg-Id": ids[1]})
        await js.publish(subject, bodies[1], headers={"Nats-Msg-Id": ids[1] + "-late"})
        await js.publish(subject, bodies[3], headers={"Nats-Msg-Id": ids[3]})
    finally:
        await client.close()
    out = tmp_path / "out"
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    metadata = wait_for_metadata(out)
    trace = trace_lines(out)
    assert_each_event_once(trace, {"p1": 5})
    assert [e["event_type"] for e in trace] == [
        "workflow_start",
        "node_start",
        "node_start",
        "node_start",
        "workflow_complete",
    ]
    assert metadata["events_written"] == 5
    collector.stop()


async def test_two_partitioned_collectors_give_each_run_one_writer(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    runs = [f"run-{index}" for index in range(8)]
    for run_id in runs:
        async with tracebus.connect(shared, "wf-part", 500, run_id=run_id) as observer:
            for index in range(500):
                await observer.node_start(f"n{index}", index)
    outs = [tmp_path / "out0", tmp_path / "out1"]
    for index, out in enumerate(outs):
        collector = Collector(shared, out, "--partition", f"{index}/2")
        collectors.append(collector)
        collector.start()
    deadline = time.monotonic() + DEADLINE
    written: Counter[str] = Counter()
    while sum(written.values()) < len(runs):
        assert time.monotonic() < deadline, written
        time.sleep(0.05)
        written = Counter()
        for out in outs:
            for path in out.glob(".tracebus/runs/wf-part/*.json"):
                if json.loads(path.read_text())["ended"]:
                    written[path.stem] += 1
    assert sorted(written) == runs and set(written.values()) == {1}
    per_collector = [len(list(out.glob(".tracebus/runs/wf-part/*.json"))) for out in outs]
    assert sum(per_collector) == len(runs) and all(per_collector)
    for collector in collectors:
        collector.stop()
