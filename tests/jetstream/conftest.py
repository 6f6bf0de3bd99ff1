"""NATS fixtures: the shared JetStream server (a fresh stream per test), servers of a test's
own (to stop and restart), and a collector process."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio

from tracebus._nats._settings import NatsSettings, NatsStream

from ..cli import TRACEBUS

SHARED_URL = "nats://127.0.0.1:4222"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
ROOT = Path(__file__).resolve().parents[2]
PRODUCER = Path(__file__).with_name("producer.py")
#: Bound on every wait for a process or a file; generous for a loaded 2-core machine.
DEADLINE = 60.0


def require_nats(present: bool, what: str) -> None:
    """Skip a test that needs NATS on a machine without it; under CI (which starts one), fail."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what}: .ci/run installs and starts `nats-server -js` when none answers")
    pytest.skip(f"{what} (Debian's nats-server; run `nats-server -js -a 127.0.0.1 -p 4222`)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class NatsServer:
    """A nats-server with JetStream of the test's own, on a free port."""

    def __init__(self, store: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.store = store
        self.extra = extra
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        require_nats(os.access(NATS_SERVER, os.X_OK), "nats-server is not installed")
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
            + list(self.extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + DEADLINE
        while not answers(self.port):
            assert self.process.poll() is None, "nats-server exited at start"
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=DEADLINE)
            self.process = None


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


def unique_stream() -> NatsStream:
    tag = uuid.uuid4().hex[:10]
    return NatsStream(name=f"TEST_{tag}", subject_prefix=f"test-{tag}", max_age=600.0)


async def delete_stream(url: str, name: str) -> None:
    """Delete a stream and the collectors' buckets made beside it."""
    client = await nats.connect(url)
    try:
        for stream in (name, f"KV_{name}_leases", f"KV_{name}_positions"):
            try:
                await client.jetstream().delete_stream(stream)
            except nats.js.errors.NotFoundError:
                pass
    finally:
        await client.close()


@pytest_asyncio.fixture
async def shared() -> AsyncIterator[NatsSettings]:
    """Settings for the shared server, with a stream of this test's own, deleted after it."""
    require_nats(answers(4222), "no NATS server answers on 127.0.0.1:4222")
    stream = unique_stream()
    yield NatsSettings(servers=(SHARED_URL,), stream=stream)
    await delete_stream(SHARED_URL, stream.name)


def stream_args(settings: NatsSettings) -> list[str]:
    return [
        "--nats",
        ",".join(settings.servers),
        "--nats-stream",
        settings.stream.name,
        "--nats-subject-prefix",
        settings.stream.subject_prefix,
    ]


def tracebus_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stderr: Any = subprocess.PIPE,
    rlimits: dict[int, tuple[int, int]] | None = None,
) -> subprocess.Popen[str]:
    def limit() -> None:
        for which, limits in (rlimits or {}).items():
            resource.setrlimit(which, limits)

    return subprocess.Popen(
        [*TRACEBUS, *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        preexec_fn=limit if rlimits else None,
    )


class Collector:
    """``tracebus serve --nats ...`` as a process. With ``log``, its stderr goes to that file
    (read it while it runs); ``rlimits`` are set in it before it starts."""

    def __init__(
        self,
        settings: NatsSettings,
        out: Path,
        *extra: str,
        log: Path | None = None,
        rlimits: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        self.args = ["serve", *stream_args(settings), "--out", str(out), *extra]
        self.log = log
        self.rlimits = rlimits
        self.process: subprocess.Popen[str] | None = None
        self.stdout = ""

    def launch(self) -> None:
        """Start it, without waiting for it to say it is consuming."""
        if self.log is None:
            self.process = tracebus_cli(*self.args, rlimits=self.rlimits)
        else:
            with open(self.log, "a") as log:
                self.process = tracebus_cli(*self.args, stderr=log, rlimits=self.rlimits)

    def wait_consuming(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()  # the "consuming ..." line, once it runs
        if "consuming" not in line:
            rest = self.log.read_text() if self.log else self.process.communicate()[1]
            raise AssertionError(line + rest)

    def start(self) -> None:
        self.launch()
        self.wait_consuming()

    def read_log(self) -> str:
        assert self.log is not None
        return self.log.read_text()

    def wait_for_log(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while text not in (log := self.read_log()):
            assert self.process is not None and self.process.poll() is None, log
            assert time.monotonic() < deadline, f"no {text!r} in:\n{log}"
            time.sleep(0.05)
        return log

    def lift_limit(self, which: int) -> None:
        assert self.process is not None
        resource.prlimit(self.process.pid, which, (resource.RLIM_INFINITY,) * 2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.communicate(timeout=DEADLINE)
        self.process = None

    def stop(self) -> str:
        """SIGTERM; return what it wrote on stderr (its stop line is in ``stdout``). Asserts
        exit code 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=DEADLINE)
        code = self.process.returncode
        self.process = None
        self.stdout = out
        err = self.read_log() if self.log is not None else err
        assert code == 0, err
        return err

    def close(self) -> None:
        if self.process is not None:
            self.kill()


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    """Collectors a test started; any still running is killed at the end."""
    started: list[Collector] = []
    yield started
    for collector in started:
        collector.close()


def run_producers(settings: NatsSettings, workflow_id: str, run_id: str, counts: list[int]) -> None:
    """One producer process per count, each publishing that many events into the run."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(PRODUCER),
                ",".join(settings.servers),
                settings.stream.name,
                settings.stream.subject_prefix,
                workflow_id,
                run_id,
                f"w{index}",
                str(count),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for index, count in enumerate(counts)
    ]
    for process in processes:
        out, err = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, err
        assert json.loads(out)["delivered"] > 0


def wait_for_metadata(out: Path, status: str = "complete") -> dict[str, Any]:
    """The run's metadata once the collector wrote it with ``status``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for path in out.glob("audit/step_*/metadata_*.json"):
            metadata: dict[str, Any] = json.loads(path.read_text())
            if metadata.get("status") == status:
                return metadata
        assert time.monotonic() < deadline, f"no {status} run in {out}"
        time.sleep(0.05)


def trace_lines(out: Path) -> list[dict[str, Any]]:
    traces = list(out.glob("traces/*.jsonl"))
    assert len(traces) == 1, traces
    return [json.loads(line) for line in traces[0].read_text().splitlines()]
