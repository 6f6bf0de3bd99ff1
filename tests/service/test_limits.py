"""Security and limits: each refusal is a clear error, counted, and the service carries on."""

from __future__ import annotations

import os
import signal
import stat
import struct
from pathlib import Path

import anyio
import pytest

import tracebus
from tracebus._factory import EventFactory
from tracebus._service._protocol import ErrorReply

from ..cli import run_tracebus
from .conftest import RawClient, Service, batch, numbered, run_files


def _service(tmp_path: Path, sockdir: Path, *options: str) -> Service:
    return Service(tmp_path / "out", sockdir / "c.sock", *options).start()


def test_socket_is_reachable_by_its_owner_only(service: Service) -> None:
    assert stat.S_IMODE(os.stat(service.socket).st_mode) == 0o600


def test_wrong_token_is_refused_and_counted(tmp_path: Path, sockdir: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    service = _service(tmp_path, sockdir, "--token-file", str(token))
    try:
        with pytest.raises(tracebus.ServiceError, match="bad_token") as refused:
            tracebus.connect_sync(service.socket, "step_01_t", token="guess").close()
        assert refused.value.code == "bad_token"
        with pytest.raises(tracebus.ServiceError, match="bad_token"):
            tracebus.connect_sync(service.socket, "step_01_t").close()  # no token at all
        with tracebus.connect_sync(service.socket, "step_01_t", token="s3cret") as obs:
            obs.note("let in")
        assert service.status(token="s3cret")["errors"] == {"bad_token": 2}
        _, metadata = run_files(service.out, "01")
        assert metadata["status"] == "complete"
    finally:
        service.close()


def test_tcp_beyond_loopback_needs_a_token(tmp_path: Path, sockdir: Path) -> None:
    refused = run_tracebus("serve", "--out", tmp_path, "--tcp", "0.0.0.0:0")
    assert refused.returncode == 2
    assert "needs a token: use --token-file" in refused.stderr

    token = tmp_path / "token"
    token.write_text("t0ken")
    service = _service(tmp_path, sockdir, "--tcp", "0.0.0.0:0", "--token-file", str(token))
    try:
        address = service.address.replace("0.0.0.0", "127.0.0.1")
        assert address.startswith("tcp://127.0.0.1:")
        with tracebus.connect_sync(address, "step_02_tcp", token="t0ken") as obs:
            obs.note("over tcp")
        with pytest.raises(tracebus.ServiceError, match="bad_token"):
            tracebus.connect_sync(address, "step_02_tcp", token="nope").close()
        _, metadata = run_files(service.out, "02")
        assert metadata["events_written"] == 3
    finally:
        service.close()


async def test_oversize_frame_gets_an_error_and_the_connection_closes(
    tmp_path: Path, sockdir: Path
) -> None:
    service = _service(tmp_path, sockdir, "--max-frame-bytes", "4096")
    try:
        client = await RawClient.connect(service.socket)
        await client.send_raw(struct.pack(">I", 4097) + b"x" * 100)
        reply = await client.receive()
        assert isinstance(reply, ErrorReply) and reply.fatal
        assert reply.code == "frame_too_large"
        assert reply.message == "a frame of 4097 bytes is over the limit of 4096 bytes"
        with pytest.raises(anyio.EndOfStream):
            await client.receive()
        await client.aclose()

        # an observer never sends such a frame: the one event too large is refused alone
        with pytest.raises(tracebus.DeliveryError) as failed:
            async with tracebus.connect(service.socket, "step_03_big") as obs:
                await obs.note("small")
                await obs.note("big", blob="x" * 10_000)
                await obs.note("small again")
        assert failed.value.rejected == 1 and failed.value.undelivered == 0
        assert "frame_too_large" in str(failed.value)
        trace, _ = run_files(service.out, "03")
        assert [e.get("message") for e in trace if e["event_type"] == "note"] == [
            "small",
            "small again",
        ]
        status = await service.astatus()
        assert status["errors"] == {"frame_too_large": 1}
    finally:
        service.close()


async def test_too_many_events_in_a_frame(tmp_path: Path, sockdir: Path) -> None:
    service = _service(tmp_path, sockdir, "--max-events-per-frame", "5")
    try:
        events = EventFactory("step_04_many", "many", "raw")
        client = await RawClient.connect(service.socket)
        notes = numbered([events.note(str(i), None, {}) for i in range(6)])
        await client.send(batch(7, notes, "step_04_many", "many"))
        reply = await client.receive()
        assert isinstance(reply, ErrorReply) and reply.fatal and reply.id == 7
        assert reply.code == "too_many_events"
        await client.aclose()
        # the observer keeps its frames within the limit the welcome announced
        async with tracebus.connect(service.socket, "step_05_ok") as obs:
            for index in range(50):
                await obs.note(str(index))
        trace, _ = run_files(service.out, "05")
        assert len(trace) == 52
    finally:
        service.close()


async def test_too_many_connections(tmp_path: Path, sockdir: Path) -> None:
    service = _service(tmp_path, sockdir, "--max-connections", "2")
    try:
        async with (
            tracebus.connect(service.socket, "step_06_a") as first,
            tracebus.connect(service.socket, "step_07_b") as second,
        ):
            with pytest.raises(tracebus.ServiceError, match="too_many_connections") as refused:
                async with tracebus.connect(service.socket, "step_08_c"):
                    pass
            assert "limit of 2 connections" in refused.value.message
            await first.note("unaffected")
            await second.note("unaffected")
        async with tracebus.connect(service.socket, "step_08_c") as third:
            await third.note("room again")
        status = await service.astatus()
        assert status["errors"] == {"too_many_connections": 1}
        assert status["runs_ended"] == 3
    finally:
        service.close()


async def test_too_many_open_runs(tmp_path: Path, sockdir: Path) -> None:
    service = _service(tmp_path, sockdir, "--max-open-runs", "1")
    try:
        async with tracebus.connect(service.socket, "step_09_one") as first:
            with pytest.raises(tracebus.ServiceError, match="too_many_runs"):
                async with tracebus.connect(service.socket, "step_10_two"):
                    pass
            await first.note("unaffected")
        async with tracebus.connect(service.socket, "step_10_two") as second:
            await second.note("the first run has ended")
        assert (await service.astatus())["errors"] == {"too_many_runs": 1}
    finally:
        service.close()


def test_sigterm_with_runs_open_completes_files_and_exits_zero(service: Service) -> None:
    obs = tracebus.connect_sync(service.socket, "step_11_open", 10, producer="worker")
    for index in range(10):
        obs.node_start(f"n{index}", index)
    obs.flush()
    code, out = service.signal(signal.SIGTERM)
    assert code == 0
    assert "stopped; 11 events written, 1 runs left open" in out  # the run did not end

    trace, metadata = run_files(service.out, "11")
    assert metadata["status"] == "incomplete"
    assert metadata["events_written"] == 11 == len(trace)
    assert [e["seq"] for e in trace] == list(range(1, 12))

    # restarted, the service resumes the run; the producer, still alive, completes it
    service.start()
    with tracebus.connect_sync(
        service.socket, "step_11_open", run_id=obs.run_id, join=True, producer="late"
    ) as late:
        late.note("after the restart")
    obs.close()  # sends workflow_complete: reconnects within its timeout
    trace, metadata = run_files(service.out, "11")
    assert metadata["status"] == "complete"
    assert [e["event_type"] for e in trace][-2:] == ["note", "workflow_complete"]
    assert metadata["events_written"] == 13


def test_status_command(service: Service) -> None:
    shown = run_tracebus("status", "--socket", service.socket)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(": ", 1) for line in shown.stdout.splitlines())
    for name in ("clients", "runs_open", "events_received", "events_written", "events_rejected"):
        assert name in lines
    assert lines["clients"] == "1"  # the status command's own connection


def test_status_without_a_service_exits_one(sockdir: Path) -> None:
    shown = run_tracebus("status", "--socket", sockdir / "none.sock")
    assert shown.returncode == 1
    assert shown.stderr.startswith("tracebus status: cannot reach the collector at unix:")


def test_a_second_service_does_not_take_over_a_live_socket(
    service: Service, tmp_path: Path
) -> None:
    second = run_tracebus("serve", "--out", tmp_path / "other", "--socket", service.socket)
    assert second.returncode == 2
    assert "a service is already listening on" in second.stderr
    assert service.status()["clients"] == 1


def test_sigint_drains_like_sigterm(service: Service) -> None:
    obs = tracebus.connect_sync(
        service.socket, "step_12_int", backend="trio", reconnect_timeout=0.2
    )
    obs.note("before the interrupt")
    obs.flush()
    code, out = service.signal(signal.SIGINT)
    with pytest.raises(tracebus.DeliveryError) as failed:  # its workflow_complete: no service
        obs.close()
    assert failed.value.undelivered == 1
    assert code == 0
    assert "stopped; 2 events written, 1 runs left open" in out  # incomplete, below
    trace, metadata = run_files(service.out, "12")
    assert metadata["status"] == "incomplete" and len(trace) == 2
