"""The service killed and restarted: runs resume, resends are not doubled, nothing is lost."""

from __future__ import annotations

import os
import signal
import stat
import uuid
from pathlib import Path

import anyio

import tracebus
from tracebus._factory import EventFactory
from tracebus._service._protocol import Ack, ErrorReply

from .conftest import (
    RawClient,
    Service,
    batch,
    expect_line,
    finish,
    numbered,
    run_files,
    seqs_by_producer,
    spawn_producer,
)

PRODUCERS = 4
EVENTS = 10_000


def test_killed_service_restarted_while_producers_emit_loses_and_doubles_nothing(
    service: Service,
) -> None:
    run_id = uuid.uuid4().hex
    opener = tracebus.connect_sync(
        service.socket, "step_02_restart", PRODUCERS * EVENTS // 2, run_id=run_id, producer="opener"
    )
    producers = [
        spawn_producer(
            service.socket,
            "step_02_restart",
            events=EVENTS,
            run_id=run_id,
            join=True,
            producer=f"p{index}",
            pause_at=EVENTS // 2,
        )
        for index in range(PRODUCERS)
    ]
    for process in producers:
        expect_line(process, "connected")
        expect_line(process, "paused")

    service.kill()  # SIGKILL: no drain, no metadata, maybe unacknowledged batches
    for process in producers:  # they emit the second half while nothing listens
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    service.start()
    stats = [finish(process) for process in producers]
    opener.close()

    assert all(s["undelivered"] == s["rejected"] == s["dropped"] == 0 for s in stats)
    assert all(s["delivered"] == EVENTS for s in stats)
    assert all(s["reconnects"] >= 1 for s in stats)
    trace, metadata = run_files(service.out, "02")
    seqs = seqs_by_producer(trace)
    for index in range(PRODUCERS):
        assert sorted(seqs[f"p{index}"]) == list(range(1, EVENTS + 1))  # none lost, none twice
    assert seqs["opener"] == [1, 2]
    assert metadata["status"] == "complete"
    assert metadata["nodes_completed"] == PRODUCERS * EVENTS // 2
    assert metadata["run_id"] == run_id
    assert service.status()["runs_resumed"] == 1


async def test_batch_resent_to_a_restarted_service_is_written_once(service: Service) -> None:
    events = EventFactory("step_07_raw", "raw-run", "raw")
    first = numbered([events.workflow_start(3, ""), events.node_start("a", 0)])
    client = await RawClient.connect(service.socket)
    await client.send(batch(1, first))
    assert await client.receive() == Ack(id=1)
    await client.aclose()

    service.kill()
    service.start()
    # the client never saw the ack: it sends batch 1 again, then goes on
    resent = numbered([events.workflow_start(3, ""), events.node_start("a", 0)])
    more = numbered([events.node_success("a", 0.5, None, None, 0.0)], first=3)
    client = await RawClient.connect(service.socket)
    await client.send(batch(1, resent))
    await client.send(batch(2, more))
    replies = [await client.receive()]
    if replies[0] != Ack(id=2):
        replies.append(await client.receive())
    assert replies[-1] == Ack(id=2)
    await client.aclose()
    status = await service.astatus()
    assert status["events_duplicate"] == 2
    assert status["runs_resumed"] == 1
    code, _ = service.signal(signal.SIGTERM)
    assert code == 0

    trace, metadata = run_files(service.out, "07")
    assert [(e["event_type"], e["seq"]) for e in trace] == [
        ("workflow_start", 1),
        ("node_start", 2),
        ("node_success", 3),
    ]
    assert metadata["status"] == "incomplete"
    assert metadata["nodes_completed"] == 1


async def test_resume_cuts_a_torn_last_line_and_repairs_the_audit_copy(service: Service) -> None:
    events = EventFactory("step_08_torn", "torn-run", "raw")
    client = await RawClient.connect(service.socket)
    await client.send(
        batch(1, numbered([events.workflow_start(1, "")]), "step_08_torn", "torn-run")
    )
    assert await client.receive() == Ack(id=1)
    await client.aclose()
    service.kill()

    main = next((service.out / "traces").glob("trace_step_08_*.jsonl"))
    with open(main, "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"event_type":"node_st')
    audit = service.out / "audit" / "step_08" / "trace_08.jsonl"
    audit.unlink()  # an audit copy that is not the trace any more (not a second name of it)
    audit.write_bytes(b"")

    service.start()
    client = await RawClient.connect(service.socket)
    more = numbered([events.node_start("a", 0), events.workflow_complete(None)], first=2)
    await client.send(batch(1, more, "step_08_torn", "torn-run"))
    assert await client.receive() == Ack(id=1)
    await client.aclose()

    trace, metadata = run_files(service.out, "08")  # also: the audit copy equals the trace
    assert [e["event_type"] for e in trace] == ["workflow_start", "node_start", "workflow_complete"]
    assert os.path.samefile(audit, main)  # a second name of the trace again
    assert metadata["status"] == "complete"
    assert metadata["events_written"] == 3


async def test_a_run_whose_end_was_written_just_before_a_kill_ends_on_resume(
    service: Service,
) -> None:
    events = EventFactory("step_09_end", "end-run", "raw")
    sent = numbered([events.workflow_start(1, ""), events.workflow_complete(None)])
    client = await RawClient.connect(service.socket)
    await client.send(batch(1, sent, "step_09_end", "end-run"))
    assert await client.receive() == Ack(id=1)
    await client.aclose()
    service.kill()
    # as if killed after the trace got workflow_complete, before the end was recorded
    entry = service.out / ".tracebus" / "runs" / "step_09_end" / "end-run.json"
    entry.write_text(entry.read_text().replace('"ended": true', '"ended": false'))
    (service.out / "audit" / "step_09" / "metadata_09.json").unlink()

    service.start()
    client = await RawClient.connect(service.socket)
    resent = numbered([events.workflow_start(1, ""), events.workflow_complete(None)])
    await client.send(batch(1, resent, "step_09_end", "end-run"))
    assert await client.receive() == Ack(id=1)
    late = numbered([events.note("late", None, {})], first=3)
    await client.send(batch(2, late, "step_09_end", "end-run"))
    reply = await client.receive()
    assert isinstance(reply, ErrorReply) and reply.code == "run_ended" and reply.id == 2
    await client.aclose()

    trace, metadata = run_files(service.out, "09")
    assert [e["event_type"] for e in trace] == ["workflow_start", "workflow_complete"]
    assert metadata["status"] == "complete"


def test_files_of_a_resumed_run_follow_the_services_umask(tmp_path: Path, sockdir: Path) -> None:
    service = Service(tmp_path / "out", sockdir / "c.sock", umask=0o027).start()
    try:
        anyio.run(_one_batch_then_kill_then_the_rest, service)
    finally:
        service.close()
    modes = {
        str(path.relative_to(service.out)): stat.S_IMODE(path.stat().st_mode)
        for path in service.out.rglob("*")
    }
    assert ".tracebus/runs/step_10_modes/modes-run.json" in modes
    assert "audit/step_10/trace_10.jsonl" in modes  # replaced by a copy at the resume
    assert "audit/step_10/metadata_10.json" in modes
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o750 if (service.out / name).is_dir() else 0o640)
    }
    assert wrong == {}


async def _one_batch_then_kill_then_the_rest(service: Service) -> None:
    events = EventFactory("step_10_modes", "modes-run", "raw")
    client = await RawClient.connect(service.socket)
    await client.send(batch(1, numbered([events.workflow_start(1, "")]), *_MODES_RUN))
    assert await client.receive() == Ack(id=1)
    await client.aclose()
    service.kill()
    service.start()
    client = await RawClient.connect(service.socket)
    rest = numbered([events.node_success("a", 0.5, None, None, 0.0)], first=2)
    rest += numbered([events.workflow_complete(None)], first=3)
    await client.send(batch(2, rest, *_MODES_RUN))
    assert await client.receive() == Ack(id=2)
    await client.aclose()
    code, _ = service.signal(signal.SIGTERM)
    assert code == 0


_MODES_RUN = ("step_10_modes", "modes-run")
