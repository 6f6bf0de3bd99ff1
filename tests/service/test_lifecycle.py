"""The service keeps serving and stops when told: abandoned runs are closed, descriptors never
run out, a client that does not read cannot hold up the stop, close honours its timeout, and
the stop line tells the truth."""

from __future__ import annotations

import json
import resource
import signal
import struct
import time
from pathlib import Path

import pytest

import tracebus
from tracebus._factory import EventFactory
from tracebus._service._protocol import Ack, ErrorReply, StatusRequest, encode

from .conftest import RawClient, Service, batch, numbered, run_files

DESCRIPTORS = 256


async def _open_and_leave(service: Service, index: int) -> ErrorReply | None:
    """A producer that opens a run and dies: its connection goes, its run stays open."""
    workflow_id = f"step_{index:02d}_gone"
    events = EventFactory(workflow_id, "r", f"p{index}")
    client = await RawClient.connect(service.socket, producer=f"p{index}")
    await client.send(
        batch(1, numbered([events.workflow_start(1, "")], f"p{index}"), workflow_id, "r")
    )
    reply = await client.receive()
    await client.aclose()
    if isinstance(reply, ErrorReply):
        return reply
    assert reply == Ack(id=1)
    return None


async def test_abandoned_runs_are_closed_and_descriptors_never_run_out(
    tmp_path: Path, sockdir: Path
) -> None:
    service = Service(
        tmp_path / "out",
        sockdir / "c.sock",
        "--run-idle-timeout",
        "8",
        rlimits={resource.RLIMIT_NOFILE: (DESCRIPTORS, DESCRIPTORS)},
    ).start()
    try:
        refusals = [await _open_and_leave(service, index) for index in range(80)]
        refused = [reply for reply in refusals if reply is not None]
        assert refused, "80 runs of 5 descriptors each fit in 256"
        for reply in refused:
            assert reply.code == "too_many_runs" and reply.fatal
            assert reply.message.startswith("file descriptors run short (")
            assert f"of the limit of {DESCRIPTORS} in use)" in reply.message
        opened = 80 - len(refused)
        deadline = time.monotonic() + 120
        while (status := await service.astatus())["runs_open"]:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["runs_idle_closed"] == opened
        # room again: the refused ones can open now
        assert await _open_and_leave(service, 99) is None
        log = service.log.read_text()
    finally:
        service.close()
    assert "Traceback" not in log
    assert "no producer for 8s; closed" in log
    metadata = [json.loads(p.read_text()) for p in service.out.glob("audit/step_*/metadata_*.json")]
    assert len(metadata) == opened + 1
    assert {m["status"] for m in metadata} == {"incomplete"}


async def test_a_client_that_never_reads_does_not_keep_the_service_from_stopping(
    service: Service,
) -> None:
    client = await RawClient.connect(service.socket)
    request = encode(StatusRequest())
    # one write (it fits the socket's buffer); the replies fill the service's side of it
    await client.send_raw((struct.pack(">I", len(request)) + request) * 5_000)
    deadline = time.monotonic() + 60
    while (await service.astatus())["frames_received"] < 300:  # it is stuck answering them
        assert time.monotonic() < deadline
        time.sleep(0.05)
    code, out = service.signal(signal.SIGTERM)
    await client.aclose()
    assert code == 0
    assert "tracebus serve: stopped; 0 events written, 0 runs left open" in out


def test_close_honours_its_timeout_while_the_service_is_down(service: Service) -> None:
    obs = tracebus.connect_sync(
        service.socket,
        "step_01_down",
        overflow="drop",
        capacity=100,
        close_timeout=2,
        reconnect_timeout=60,
    )
    obs.note("delivered")
    obs.flush()
    service.kill()
    for index in range(1_000):  # fills the queue: the end has to wait for room
        obs.note(str(index))
    with pytest.raises(tracebus.DeliveryError) as failed:
        obs.close()
    reason = failed.value.reason
    assert "not all acknowledged within close_timeout (2s)" in reason
    assert "gave up" not in reason  # it did not wait for reconnect_timeout
    # The start, 1,001 notes and the end: all but what was delivered is counted, whether the
    # end found room in the queue before the deadline (then emitted counts it) or not.
    stats = obs.statistics()
    assert stats.delivered == 2
    assert failed.value.undelivered == 1 + 1_001 + 1 - stats.delivered


def test_the_stop_line_counts_the_runs_left_open(service: Service) -> None:
    done = tracebus.connect_sync(service.socket, "step_02_done")
    open_ones = [
        tracebus.connect_sync(service.socket, f"step_{index:02d}_open", close_timeout=1)
        for index in (3, 4)
    ]
    for obs in open_ones:
        obs.note("not ended")
        obs.flush()
    done.close()
    code, out = service.signal(signal.SIGTERM)
    assert code == 0
    assert "stopped; 6 events written, 2 runs left open" in out
    for obs in open_ones:
        with pytest.raises(tracebus.DeliveryError):  # its end: no service to take it
            obs.close()
    _, metadata = run_files(service.out, "03")
    assert metadata["status"] == "incomplete"
