"""The JetStream collector when things go wrong: a full disk, forged messages, a second
collector, restarts. Nothing acknowledged is lost, no publisher can silence another, one
collector writes a run, and a restart picks up where the last one stopped."""

from __future__ import annotations

import json
import resource
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import nats

import tracebus
from tracebus._factory import EventFactory
from tracebus._nats._connection import ensure_stream
from tracebus._nats._settings import NatsSettings, Partition
from tracebus._service._protocol import Batch, encode

from .conftest import DEADLINE, Collector, trace_lines, wait_for_metadata

DURABLE = "tracebus-collector"


async def _publish(
    settings: NatsSettings, workflow_id: str, run_id: str, events: list[Any]
) -> None:
    """One message as a publisher of another kind (or a forger) would send it."""
    client = await nats.connect(settings.servers[0])
    try:
        js = client.jetstream()
        await ensure_stream(js, settings.stream)
        body = encode(
            Batch(id=1, workflow_id=events[0].workflow_id, run_id=events[0].run_id, events=events)
        )
        msg_id = f"forged:{events[0].producer}:{events[0].seq}:{time.monotonic_ns()}"
        await js.publish(
            settings.stream.subject(workflow_id, run_id), body, headers={"Nats-Msg-Id": msg_id}
        )
    finally:
        await client.close()


async def _consumer(settings: NatsSettings) -> tuple[int, int]:
    """The durable consumer's acknowledgement floor and the stream's last sequence."""
    client = await nats.connect(settings.servers[0])
    try:
        js = client.jetstream()
        info = await js.consumer_info(settings.stream.name, DURABLE)
        stream = await js.stream_info(settings.stream.name)
        return info.ack_floor.stream_seq, stream.state.last_seq
    finally:
        await client.close()


async def _nodes(obs: Any, nodes: range) -> None:
    for index in nodes:
        await obs.node_start(f"n{index}", index)
        await obs.node_success(f"n{index}", 0.001)


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _seqs(trace: list[dict[str, Any]]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for event in trace:
        seqs.setdefault(event["producer"], []).append(event["seq"])
    return seqs


def _ended(out: Path, workflow_id: str, run_id: str) -> bool:
    entry = out / ".tracebus" / "runs" / workflow_id / f"{run_id}.json"
    return entry.exists() and json.loads(entry.read_text())["ended"]


def _run_of(out: Path, step: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    metadata: dict[str, Any] = json.loads(
        (out / f"audit/step_{step}/metadata_{step}.json").read_text()
    )
    trace_file = Path(metadata["execution_trace_file"])
    trace = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert Path(metadata["trace_file"]).read_bytes() == trace_file.read_bytes()
    assert metadata["events_written"] == len(trace)
    return trace, metadata


async def test_messages_the_full_disk_refused_are_not_acknowledged_and_come_again(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    async with tracebus.connect(shared, "wf-full", 10_000, run_id="run-1", producer="p1") as obs:
        await _nodes(obs, range(10_000))
    out, log = tmp_path / "out", tmp_path / "collector.log"
    collector = Collector(
        shared, out, log=log, rlimits={resource.RLIMIT_FSIZE: (200_000, resource.RLIM_INFINITY)}
    )
    collectors.append(collector)
    collector.start()
    deadline = time.monotonic() + DEADLINE
    while "fetching again" not in log.read_text():  # it could not write, and says so
        floor, last = await _consumer(shared)
        assert floor < last, "every message was acknowledged though the files took few of them"
        assert time.monotonic() < deadline, log.read_text()
        await anyio.sleep(0.05)
    floor, last = await _consumer(shared)
    assert floor < last
    assert "the trace refused a write (" in log.read_text()

    collector.lift_limit(resource.RLIMIT_FSIZE)  # room again
    metadata = wait_for_metadata(out)
    trace = trace_lines(out)
    assert _seqs(trace) == {"p1": list(range(1, 20_003))}
    assert metadata["events_written"] == 20_002 and metadata["nodes_completed"] == 10_000
    floor, last = await _consumer(shared)
    assert floor == last
    collector.stop()


async def test_a_forged_message_far_ahead_of_a_producer_is_refused(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    out, log = tmp_path / "out", tmp_path / "collector.log"
    collector = Collector(shared, out, log=log)
    collectors.append(collector)
    collector.start()
    async with tracebus.connect(shared, "wf-victim", 2_800, run_id="run-1", producer="victim") as v:
        await _nodes(v, range(500))
        await v.flush()
        forged = EventFactory("wf-victim", "run-1", "victim").note("forged", None, {})
        forged.seq = 10**12
        await _publish(shared, "wf-victim", "run-1", [forged])
        _until(
            lambda: any(
                text in log.read_text() for text in ("not written", "wrote on", "writing on")
            ),
            "the forged message was neither refused nor written",
        )
        await _nodes(v, range(500, 2_300))  # the victim's next 3,600 events
    wait_for_metadata(out)
    trace = trace_lines(out)
    assert _seqs(trace) == {"victim": list(range(1, 4_603))}
    assert "forged" not in {e.get("message") for e in trace}
    collector.stop()
    assert "seq 1000000000000 is more than 100,000 past the highest" in collector.read_log()
    assert "1 messages refused" in collector.stdout


async def test_a_message_whose_ids_are_not_its_subjects_run_is_refused(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    out, log = tmp_path / "out", tmp_path / "collector.log"
    async with tracebus.connect(shared, "wf-victim", 1, run_id="run-1", producer="victim") as v:
        await _nodes(v, range(1))
        stray = EventFactory("wf-victim", "run-2", "other")
        start = stray.workflow_start(1, "")
        start.seq = 1
        await _publish(shared, "wf-victim", "run-1", [start])  # on run-1's subject
    collector = Collector(shared, out, log=log)
    collectors.append(collector)
    collector.start()
    wait_for_metadata(out)
    collector.stop()
    assert not (out / ".tracebus/runs/wf-victim/run-2.json").exists()
    assert _seqs(trace_lines(out)) == {"victim": [1, 2, 3, 4]}
    assert "holding events of run run-2 of wf-victim, not of the run its subject names" in (
        collector.read_log()
    )
    assert "1 messages refused" in collector.stdout


def _first_line(process: Any) -> list[str]:
    """Its first line of stdout, read by a thread (it may not come)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True).start()
    return lines


async def test_a_second_collector_on_one_durable_waits_for_the_first(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    first = Collector(shared, tmp_path / "first")
    second = Collector(shared, tmp_path / "second", log=tmp_path / "second.log")
    collectors += [first, second]
    first.start()
    second.launch()
    said = _first_line(second.process)
    _until(
        lambda: "is held by" in second.read_log() or said,
        "the second collector neither waited nor consumed",
    )
    async with tracebus.connect(shared, "step_01_one", 100, run_id="one") as obs:
        await _nodes(obs, range(100))
    wait_for_metadata(tmp_path / "first")  # the first still consumes
    assert not said and not (tmp_path / "second").exists()

    first.stop()
    _until(lambda: said, "the second collector did not take over")
    assert "consuming" in said[0]
    async with tracebus.connect(shared, "step_02_two", 100, run_id="two") as obs:
        await _nodes(obs, range(100))
    metadata = wait_for_metadata(tmp_path / "second")
    assert metadata["run_id"] == "two" and metadata["events_written"] == 202
    assert not list((tmp_path / "first").glob("audit/step_02"))
    second.stop()


async def test_a_rolling_restart_loses_and_doubles_nothing(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    """The deploy: a new collector starts beside the old one, then the old one is stopped,
    while producers keep publishing into runs that stay open throughout."""
    out = tmp_path / "out"
    old = Collector(shared, out)
    new = Collector(shared, out, log=tmp_path / "new.log")
    collectors += [old, new]
    old.start()
    async with AsyncExitStack() as stack:
        observers = [
            await stack.enter_async_context(
                tracebus.connect(
                    shared, f"step_0{step}_roll", 3_000, run_id=f"roll-{step}", producer=f"p{step}"
                )
            )
            for step in (1, 2, 3)
        ]
        written = 0

        async def phase(part: int) -> None:
            nonlocal written
            for obs in observers:
                await _nodes(obs, range(part * 1_000, (part + 1) * 1_000))
                await obs.flush()
            written += 3 * 2_000
            _until(
                lambda: (
                    sum(len(p.read_bytes().splitlines()) for p in out.glob("traces/*.jsonl"))
                    >= written + 3
                ),
                f"phase {part} was not written",
            )

        await phase(0)
        new.launch()
        said = _first_line(new.process)
        _until(lambda: "is held by" in new.read_log() or said, "the new one neither waited nor ran")
        await phase(1)  # written by the old one: the new one only waits
        assert "resumed" not in new.read_log(), "two collectors wrote the runs"
        old.stop()
        assert "3 runs left open" in old.stdout  # open, handed over
        _until(lambda: said, "the new collector did not take over")
        await phase(2)
    _until(
        lambda: all(_ended(out, f"step_0{step}_roll", f"roll-{step}") for step in (1, 2, 3)),
        "the runs did not all end",
    )
    for step in (1, 2, 3):
        trace, metadata = _run_of(out, f"0{step}")
        assert _seqs(trace) == {f"p{step}": list(range(1, 6_003))}
        assert metadata["status"] == "complete" and metadata["write_errors"] == {}
    new.stop()


async def test_partitions_sharing_an_output_directory_keep_to_their_own_runs(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    """A message on partition 0's subject naming partition 1's run, while partition 1 writes
    that run: partition 0 must not take it up (it would be a second writer)."""
    candidates = [f"run-{index}" for index in range(50)]
    mine = next(r for r in candidates if Partition(0, 2).owns("step_01_part", r))
    theirs = next(r for r in candidates if Partition(1, 2).owns("step_02_part", r))
    out = tmp_path / "out"
    zero = Collector(shared, out, "--partition", "0/2", log=tmp_path / "zero.log")
    one = Collector(shared, out, "--partition", "1/2", log=tmp_path / "one.log")
    collectors += [zero, one]
    one.start()
    async with tracebus.connect(shared, "step_02_part", 1_000, run_id=theirs, producer="b") as b:
        await _nodes(b, range(500))
        await b.flush()
        _until(lambda: (out / f".tracebus/runs/step_02_part/{theirs}.json").exists(), "not open")
        async with tracebus.connect(shared, "step_01_part", 1_000, run_id=mine, producer="a") as a:
            await _nodes(a, range(1_000))
            stray = EventFactory("step_02_part", theirs, "b")
            note = stray.note("stray", None, {})
            note.seq = 1
            await _publish(shared, "step_01_part", mine, [note])  # partition 0's subject
        zero.start()
        _until(lambda: _ended(out, "step_01_part", mine), "partition 0 did not end its run")
        await _nodes(b, range(500, 1_000))
    _until(lambda: _ended(out, "step_02_part", theirs), "partition 1 did not end its run")
    zero.stop()
    one.stop()
    for step, producer in (("01", "a"), ("02", "b")):
        trace, metadata = _run_of(out, step)
        assert _seqs(trace) == {producer: list(range(1, 2_003))}
        assert "stray" not in {e.get("message") for e in trace}
        assert metadata["status"] == "complete" and metadata["write_errors"] == {}
    assert "1 messages refused" in zero.stdout


async def test_restarted_twice_without_traffic_the_collector_reads_nothing_again(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    async with tracebus.connect(shared, "step_01_once", 20_000, run_id="once") as obs:
        await _nodes(obs, range(20_000))  # 21 messages or more
    out = tmp_path / "out"
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    wait_for_metadata(out)
    collector.stop()
    written, _ = _run_of(out, "01")

    collector.start()  # the first restart: nothing new
    collector.stop()
    first = collector.stdout

    async def marker(step: int, where: Path) -> None:
        """A small run published after a restart: once it is written, so is anything the
        collector read again before it."""
        async with tracebus.connect(shared, f"step_0{step}_marker", run_id=f"m{step}") as obs:
            await obs.note("after the restart")
        _until(lambda: _ended(where, f"step_0{step}_marker", f"m{step}"), "marker not written")

    fresh = Collector(shared, tmp_path / "fresh")  # the second restart, somewhere new
    collectors.append(fresh)
    fresh.start()
    await marker(2, tmp_path / "fresh")
    fresh.stop()
    assert not list((tmp_path / "fresh").glob("audit/step_01")), "the old run was read again"
    assert "0 events written" in first and "0 messages read" in first

    collector.start()  # the third, where it was
    await marker(3, out)
    collector.stop()
    assert _run_of(out, "01")[0] == written
    for stop_line in (fresh.stdout, collector.stdout):
        read = int(stop_line.split(" messages read")[0].rsplit(" ", 1)[1])
        assert read <= 5, stop_line  # the marker's messages, not the 21 of the old run


async def test_a_run_whose_producers_went_quiet_is_closed_and_resumed_later(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    out = tmp_path / "out"
    collector = Collector(shared, out, "--run-idle-timeout", "1", log=tmp_path / "c.log")
    collectors.append(collector)
    collector.start()
    run = tracebus.connect(shared, "step_01_quiet", 2, run_id="quiet", producer="p")
    async with run as obs:  # a producer that stops half way, for a while
        await _nodes(obs, range(1))
        await obs.flush()
        metadata = wait_for_metadata(out, "incomplete")  # closed: it holds no files now
        assert metadata["nodes_completed"] == 1
        assert "no producer for 1s; closed" in collector.read_log()
        await _nodes(obs, range(1, 2))
    metadata = wait_for_metadata(out)
    assert metadata["nodes_completed"] == 2 and metadata["events_written"] == 6
    assert "resumed after 3 events" in collector.read_log()
    collector.stop()
