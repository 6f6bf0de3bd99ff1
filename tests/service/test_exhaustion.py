"""Unauthenticated clients cannot exhaust the service: connections that never say hello
cannot keep a producer out, and frames sent before the hello stay small."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import anyio

import tracebus

from .conftest import Service, run_files

TOKEN = "s3cret"
CONNECTIONS = 24
#: The documented defaults: connections waiting for their hello, the largest frame before it.
MAX_UNIDENTIFIED = 64
MAX_HELLO_BYTES = 65_536


def _service(tmp_path: Path, sockdir: Path) -> Service:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    return Service(tmp_path / "out", sockdir / "c.sock", "--token-file", str(token)).start()


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_connections_that_never_speak_do_not_lock_out_a_producer(
    tmp_path: Path, sockdir: Path
) -> None:
    service = _service(tmp_path, sockdir)
    silent: list[socket.socket] = []
    try:
        for _ in range(300):  # more than the 256 producer connections the service takes
            quiet = socket.socket(socket.AF_UNIX)
            quiet.connect(str(service.socket))
            silent.append(quiet)
        with tracebus.connect_sync(service.socket, "step_01_in", token=TOKEN) as obs:
            obs.note("got in")
        deadline = time.monotonic() + 60
        while (status := service.status(token=TOKEN))["errors"].get(
            "too_many_connections", 0
        ) < 300 - MAX_UNIDENTIFIED:  # the oldest silent ones were dropped, each told why
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["unidentified"] <= MAX_UNIDENTIFIED
    finally:
        for quiet in silent:
            quiet.close()
        service.close()
    trace, metadata = run_files(service.out, "01")
    assert [e["event_type"] for e in trace] == ["workflow_start", "note", "workflow_complete"]
    assert metadata["status"] == "complete"


async def test_big_frames_before_the_hello_are_refused_unread(
    tmp_path: Path, sockdir: Path
) -> None:
    service = _service(tmp_path, sockdir)
    try:
        assert service.process is not None
        before = _rss_bytes(service.process.pid)
        streams = []
        chunk = b"x" * (1 << 20)
        for _ in range(CONNECTIONS):  # each sends all of a 16 MiB frame but its last byte
            stream = await anyio.connect_unix(service.socket)
            streams.append(stream)
            try:
                await stream.send(struct.pack(">I", 16 * 1024 * 1024))
                for _ in range(15):
                    await stream.send(chunk)
                await stream.send(chunk[:-1])
            except (anyio.BrokenResourceError, OSError):
                pass  # refused and closed already
        grown = _rss_bytes(service.process.pid) - before
        # what they could make it hold: a hello-sized frame each (1.5 MiB in all), not 384 MiB
        assert grown < 64 * 1024 * 1024, grown
        for stream in streams:
            reply = b""
            with anyio.fail_after(60):
                try:
                    while chunk := await stream.receive():
                        reply += chunk
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass
            assert b"frame_too_large" in reply
            assert f"over the limit of {MAX_HELLO_BYTES} bytes".encode() in reply
            await stream.aclose()
        async with tracebus.connect(service.socket, "step_02_in", token=TOKEN) as obs:
            await obs.note("got in")
        status = await service.astatus(token=TOKEN)
    finally:
        service.close()
    assert status["errors"]["frame_too_large"] == CONNECTIONS
    _, metadata = run_files(service.out, "02")
    assert metadata["status"] == "complete"
