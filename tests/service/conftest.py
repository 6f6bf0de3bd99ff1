from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import tracebus
from tracebus._service._client import fetch_status
from tracebus._service._protocol import (
    Batch,
    ErrorReply,
    Hello,
    ServerMessage,
    StatusRequest,
    Welcome,
    decode_server_message,
    encode,
)
from tracebus._service._server import Collector
from tracebus._service._transport import FrameStream, UnixAddress

from ..cli import TRACEBUS

PRODUCER = Path(__file__).with_name("producer.py")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory for sockets: a Unix socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tb", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Service:
    """A ``tracebus serve`` process; ``rlimits`` are set in it before it starts (e.g.
    ``{resource.RLIMIT_FSIZE: (soft, hard)}``)."""

    def __init__(
        self,
        out: Path,
        socket: Path,
        *options: str,
        umask: int = -1,
        rlimits: dict[int, tuple[int, int]] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.out = out
        self.socket = socket
        self.options = options
        self.umask = umask  # -1: the test process's
        self.rlimits = rlimits or {}
        self.env = env
        self.log = out.parent / f"{socket.name}.log"
        self.process: subprocess.Popen[str] | None = None
        self.address = ""

    def _limit(self) -> None:
        for which, limits in self.rlimits.items():
            resource.setrlimit(which, limits)

    def start(self) -> Service:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        where = [] if "--tcp" in self.options else ["--socket", str(self.socket)]
        command = ["serve", "--out", str(self.out), *where, *self.options]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [*TRACEBUS, *command],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                umask=self.umask,
                preexec_fn=self._limit if self.rlimits else None,
                env=self.env,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "listening on" in line, (line, self.log.read_text())
        self.address = line.split("listening on ", 1)[1].split(",", 1)[0]
        return self

    def status(self, **options: Any) -> dict[str, Any]:
        return anyio.run(lambda: fetch_status(self.target, **options))

    async def astatus(self, **options: Any) -> dict[str, Any]:
        return await fetch_status(self.target, **options)

    @property
    def target(self) -> str:
        return self.address if self.address.startswith("tcp://") else str(self.socket)

    def signal(self, signum: int) -> tuple[int, str]:
        """Send ``signum``, wait for the exit; return the exit code and the rest of stdout."""
        assert self.process is not None
        self.process.send_signal(signum)
        out, _ = self.process.communicate(timeout=60)
        return self.process.returncode, out

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.communicate(timeout=30)

    def lift_limit(self, which: int) -> None:
        """Lift one of its rlimits while it runs (as if a full disk got room again)."""
        assert self.process is not None
        resource.prlimit(self.process.pid, which, (resource.RLIM_INFINITY,) * 2)

    def wait_for_log(self, text: str, timeout: float = 60.0) -> str:
        """Its log once it holds ``text``."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log.read_text()):
            assert self.process is not None and self.process.poll() is None, log
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{log}"
            time.sleep(0.05)
        return log

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)


@pytest.fixture
def service(tmp_path: Path, sockdir: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "out", sockdir / "c.sock").start()
    yield svc
    svc.close()


def spawn_producer(
    socket: Path | str,
    workflow_id: str,
    *,
    events: int,
    run_id: str | None = None,
    join: bool = False,
    producer: str | None = None,
    pause_at: int | None = None,
    sync_threads: int = 0,
) -> subprocess.Popen[str]:
    args = [sys.executable, str(PRODUCER), str(socket), workflow_id, "--events", str(events)]
    if run_id is not None:
        args += ["--run-id", run_id]
    if join:
        args.append("--join")
    if producer is not None:
        args += ["--producer", producer]
    if pause_at is not None:
        args += ["--pause-at", str(pause_at)]
    if sync_threads:
        args += ["--sync-threads", str(sync_threads)]
    return subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def expect_line(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == text, (line, process.stderr.read() if process.stderr else "")


def finish(process: subprocess.Popen[str], stdin: str | None = None) -> dict[str, Any]:
    """Wait for a producer; return the statistics it printed."""
    out, err = process.communicate(stdin, timeout=120)
    assert process.returncode == 0, err
    stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return stats


def run_files(out: Path, step: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The trace and metadata of the run of ``step``; checks what every run must satisfy."""
    metadata: dict[str, Any] = json.loads(
        (out / "audit" / f"step_{step}" / f"metadata_{step}.json").read_text()
    )
    trace_file = Path(metadata["execution_trace_file"])
    trace = list(tracebus.read_trace(trace_file))
    assert metadata["events_written"] == len(trace)
    assert Path(metadata["trace_file"]).read_bytes() == trace_file.read_bytes()
    return trace, metadata


def seqs_by_producer(trace: list[dict[str, Any]]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for event in trace:
        seqs[event["producer"]].append(event["seq"])
    return seqs


class RawClient:
    """Speaks the wire protocol by hand, for tests that send what no observer would."""

    def __init__(self, frames: FrameStream) -> None:
        self.frames = frames

    @classmethod
    async def connect(
        cls, socket: Path | str, producer: str | None = "raw", token: str | None = None
    ) -> RawClient:
        with anyio.fail_after(60):
            while True:
                stream = await anyio.connect_unix(socket)
                client = cls(FrameStream(stream, 1 << 30))
                if producer is None:
                    return client
                await client.send(Hello(protocol=1, producer=producer, token=token))
                reply = await client.receive()
                # a producer id is one connection's at a time: the service may not have seen
                # this client's previous connection with it close yet
                if isinstance(reply, ErrorReply) and reply.code == "producer_in_use":
                    await client.aclose()
                    await anyio.sleep(0.01)
                    continue
                assert isinstance(reply, Welcome), reply
                return client

    async def send(self, message: Hello | Batch | StatusRequest) -> None:
        await self.frames.send(encode(message))

    async def send_raw(self, data: bytes) -> None:
        await self.frames.stream.send(data)

    async def receive(self) -> ServerMessage:
        return decode_server_message(await self.frames.receive())

    async def aclose(self) -> None:
        await self.frames.aclose()


def batch(
    batch_id: int,
    events: list[Any],
    workflow_id: str = "step_07_raw",
    run_id: str = "raw-run",
) -> Batch:
    return Batch(id=batch_id, workflow_id=workflow_id, run_id=run_id, events=events)


def numbered(events: list[Any], producer: str = "raw", first: int = 1) -> list[Any]:
    for offset, event in enumerate(events):
        event.producer = producer
        event.seq = first + offset
    return events


@asynccontextmanager
async def serving(out: Path, socket: Path) -> AsyncIterator[Collector]:
    """A collector on ``socket`` in this process, stopped when the block ends."""
    collector = Collector(out, address=UnixAddress(socket))
    async with anyio.create_task_group() as service:
        await service.start(collector.run)
        try:
            yield collector
        finally:
            collector.stop()
