"""A producer's identity is its own, and a run has one writer: no client can make the
service drop another's events, and two services never write one run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

import tracebus
from tracebus._factory import EventFactory
from tracebus._lock import RunLock, run_is_locked, run_lock_path
from tracebus._service._protocol import Ack, ErrorReply, Hello

from .conftest import RawClient, Service, batch, numbered, run_files, seqs_by_producer


async def test_a_live_producers_id_cannot_be_claimed_by_another_connection(
    service: Service,
) -> None:
    run_id = uuid.uuid4().hex
    async with tracebus.connect(
        service.socket, "step_01_victim", run_id=run_id, producer="victim"
    ) as victim:
        for index in range(10):
            await victim.note(f"before {index}")
        await victim.flush()

        intruder = await RawClient.connect(service.socket, producer=None)
        await intruder.send(Hello(protocol=1, producer="victim"))
        refused = await intruder.receive()
        assert isinstance(refused, ErrorReply) and refused.fatal
        assert refused.code == "producer_in_use"
        assert "producer victim is connected already" in refused.message
        await intruder.aclose()

        for index in range(1_990):
            await victim.note(f"after {index}")
    assert victim.statistics().delivered == 2 + 10 + 1_990

    trace, metadata = run_files(service.out, "01")
    assert seqs_by_producer(trace) == {"victim": list(range(1, 2 + 10 + 1_990 + 1))}
    assert metadata["status"] == "complete"
    assert (await service.astatus())["errors"] == {"producer_in_use": 1}


async def test_a_seq_far_past_what_its_producer_sent_is_refused(service: Service) -> None:
    events = EventFactory("step_02_jump", "jump", "raw")
    client = await RawClient.connect(service.socket)
    first = numbered([events.workflow_start(1, ""), events.note("1", None, {})])
    await client.send(batch(1, first, "step_02_jump", "jump"))
    assert await client.receive() == Ack(id=1)
    far = numbered([events.note("far", None, {})], first=2**62)
    await client.send(batch(2, far, "step_02_jump", "jump"))
    refused = await client.receive()
    assert isinstance(refused, ErrorReply) and refused.id == 2 and not refused.fatal
    assert refused.code == "seq_gap"
    assert refused.message == (
        "seq 4611686018427387904 is more than 100,000 past the highest (2) producer raw sent "
        "into run jump"
    )
    near = numbered([events.note("3", None, {}), events.workflow_complete(None)], first=3)
    await client.send(batch(3, near, "step_02_jump", "jump"))
    assert await client.receive() == Ack(id=3)
    await client.aclose()

    trace, metadata = run_files(service.out, "02")
    assert [e["seq"] for e in trace] == [1, 2, 3, 4]  # none left out as a "duplicate"
    assert metadata["status"] == "complete"


async def test_an_event_refused_before_sending_leaves_no_gap_in_its_producers_seqs(
    tmp_path: Path, sockdir: Path
) -> None:
    """The one event too large for a frame is refused by the observer; the others take its
    seq, so the service never sees a producer skip ahead."""
    service = Service(tmp_path / "out", sockdir / "c.sock", "--max-frame-bytes", "4096").start()
    try:
        with pytest.raises(tracebus.DeliveryError) as failed:
            async with tracebus.connect(service.socket, "step_03_big", producer="p") as obs:
                await obs.note("small")
                await obs.note("big", blob="x" * 10_000)
                await obs.note("small again")
        assert failed.value.rejected == 1
    finally:
        service.close()
    trace, _ = run_files(service.out, "03")
    assert [(e["event_type"], e["seq"]) for e in trace] == [
        ("workflow_start", 1),
        ("note", 2),
        ("note", 3),
        ("workflow_complete", 4),
    ]


def test_the_run_lock_tells_a_run_being_written(tmp_path: Path) -> None:
    path = run_lock_path(tmp_path, "wf", "r1")
    assert path == tmp_path / ".tracebus" / "runs" / "wf" / "r1.lock"
    assert not run_is_locked(tmp_path, "wf", "r1")
    lock = RunLock(path)
    lock.acquire()
    try:
        assert run_is_locked(tmp_path, "wf", "r1")
        with pytest.raises(tracebus.TracebusError, match=f"process {os.getpid()} is writing"):
            RunLock(path).acquire()  # another open file: refused, even in this process
    finally:
        lock.release()
    assert not run_is_locked(tmp_path, "wf", "r1")
    RunLock(path).acquire()  # free again (and released when this lock object goes)
