"""The JetStream publisher against real servers: unreachable, restarted, full, refused."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from tracebus import TracebusError
from tracebus._exceptions import BackendError, DeliveryError, ServiceUnavailableError
from tracebus._factory import EventFactory
from tracebus._nats._publisher import JetStreamPublisher
from tracebus._nats._settings import NatsSettings, tls_context

from .conftest import (
    Collector,
    NatsServer,
    delete_stream,
    free_port,
    stream_args,
    trace_lines,
    tracebus_cli,
    unique_stream,
    wait_for_metadata,
)


async def send_nodes(
    publisher: JetStreamPublisher, events: EventFactory, start: int, n: int
) -> None:
    for index in range(start, start + n):
        await publisher.send(events.node_start(f"n{index}", index))


async def test_unreachable_nats_at_start_is_a_clear_error() -> None:
    settings = NatsSettings(servers=(f"nats://127.0.0.1:{free_port()}",), connect_timeout=1.0)
    publisher = JetStreamPublisher(settings, "wf", "run-1", "p1")
    with pytest.raises(ServiceUnavailableError, match=r"cannot reach NATS at nats://127\.0\.0\.1"):
        async with publisher:
            pass


def test_serve_with_unreachable_nats_exits_2(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    process = tracebus_cli(
        "serve", "--nats", url, "--nats-connect-timeout", "1", "--out", str(tmp_path)
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"tracebus serve: error: cannot reach NATS at {url}")
    )
    assert "Traceback" not in err


def test_serve_refuses_a_password_in_the_url(tmp_path: Path) -> None:
    process = tracebus_cli(
        "serve", "--nats", "nats://me:secret@127.0.0.1:4222", "--out", str(tmp_path)
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "the NATS URL holds credentials" in err and "--nats-password-file" in err


def test_trio_is_refused_with_a_clear_error() -> None:
    settings = NatsSettings()

    async def enter() -> None:
        async with JetStreamPublisher(settings, "wf", "run-1", "p1"):
            pass

    with pytest.raises(BackendError, match="asyncio only"):
        anyio.run(enter, backend="trio")


async def test_nats_stopped_mid_run_and_restarted_publisher_recovers(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    settings = NatsSettings(servers=(own_nats.url,), stream=unique_stream())
    events = EventFactory("wf-restart", "run-1", "p1")
    publisher = JetStreamPublisher(
        settings, "wf-restart", "run-1", "p1", max_buffer=5_000, reconnect_timeout=60.0
    )
    async with publisher:
        await publisher.send(events.workflow_start(9_000, ""))
        await send_nodes(publisher, events, 0, 3_000)
        await publisher.flush()
        own_nats.stop()
        await send_nodes(publisher, events, 3_000, 3_000)  # within the 5,000 bound
        assert publisher.statistics().buffered == 3_000
        own_nats.start()
        await send_nodes(publisher, events, 6_000, 3_000)
        await publisher.send(events.workflow_complete(None))
        await publisher.flush()
    stats = publisher.statistics()
    assert stats.acknowledged == stats.sent == 9_002
    assert stats.messages_resent > 0

    out = tmp_path / "out"
    collector = Collector(settings, out)
    collector.start()
    try:
        metadata = wait_for_metadata(out)
    finally:
        collector.stop()
    trace = trace_lines(out)
    assert [e["seq"] for e in trace] == list(range(1, 9_003))
    assert metadata["events_written"] == 9_002


async def test_events_past_the_buffer_bound_while_nats_is_down_are_reported(
    own_nats: NatsServer,
) -> None:
    settings = NatsSettings(servers=(own_nats.url,), stream=unique_stream())
    events = EventFactory("wf-bound", "run-1", "p1")
    publisher = JetStreamPublisher(
        settings, "wf-bound", "run-1", "p1", max_buffer=2_000, overflow="drop"
    )
    with pytest.raises(DeliveryError) as caught:
        async with publisher:
            await publisher.send(events.workflow_start(3_000, ""))
            await publisher.flush()
            own_nats.stop()
            await send_nodes(publisher, events, 0, 3_000)
            own_nats.start()
    assert caught.value.undelivered == 1_000 and caught.value.rejected == 0
    assert "1000 dropped while the buffer was full" in str(caught.value)
    assert publisher.statistics().acknowledged == 2_001  # the start, then 2,000 of 3,000


async def test_publisher_gives_up_after_reconnect_timeout_and_close_says_so(
    own_nats: NatsServer,
) -> None:
    settings = NatsSettings(servers=(own_nats.url,), stream=unique_stream())
    events = EventFactory("wf-gone", "run-1", "p1")
    publisher = JetStreamPublisher(
        settings, "wf-gone", "run-1", "p1", reconnect_timeout=1.0, close_timeout=5.0
    )
    with pytest.raises(DeliveryError, match="no acknowledgement from JetStream for 1s") as caught:
        async with publisher:
            await publisher.send(events.workflow_start(10, ""))
            await publisher.flush()
            own_nats.stop()
            await send_nodes(publisher, events, 0, 10)
            with pytest.raises(ServiceUnavailableError, match="gave up"):
                await publisher.flush()
    assert caught.value.undelivered == 10


@pytest.mark.parametrize("how", ["password", "token"])
async def test_credentials_from_files_and_environment(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = ("--user", "svc", "--pass", "s3cret") if how == "password" else ("--auth", "t0ken")
    server = NatsServer(tmp_path / "js", auth)
    server.start()
    stream = unique_stream()
    secret = tmp_path / "secret"
    secret.write_text(("s3cret" if how == "password" else "t0ken") + "\n")
    try:
        base = NatsSettings(servers=(server.url,), stream=stream, connect_timeout=2.0)
        if how == "password":
            good = base.with_credentials(user="svc", password_file=secret, environ={})
        else:
            good = base.with_credentials(environ={"TRACEBUS_NATS_TOKEN_FILE": str(secret)})
        async with JetStreamPublisher(good, "wf", "run-1", "p1") as publisher:
            await publisher.send(EventFactory("wf", "run-1", "p1").workflow_start(0, ""))
            await publisher.flush()
        assert "s3cret" not in repr(good) and "t0ken" not in repr(good)

        wrong = base.with_credentials(
            environ={"TRACEBUS_NATS_USER": "svc", "TRACEBUS_NATS_PASSWORD": "wrong"}
            if how == "password"
            else {"TRACEBUS_NATS_TOKEN": "wrong"}
        )
        with pytest.raises(ServiceUnavailableError, match="refused the credentials"):
            async with JetStreamPublisher(wrong, "wf", "run-1", "p1"):
                pass

        flag = ["--nats-password-file", str(secret), "--nats-user", "svc"]
        if how == "token":
            flag = ["--nats-token-file", str(secret)]
        process = tracebus_cli("serve", *stream_args(good), *flag, "--out", str(tmp_path / "out"))
        assert process.stderr is not None
        assert "consuming" in process.stderr.readline()
        process.terminate()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    finally:
        server.stop()


async def test_a_stream_without_the_runs_subjects_is_refused(shared: NatsSettings) -> None:
    import nats
    from nats.js.api import StreamConfig

    client = await nats.connect(shared.servers[0])
    try:
        await client.jetstream().add_stream(
            StreamConfig(name=shared.stream.name, subjects=[f"other-{shared.stream.name}"])
        )
    finally:
        await client.close()
    with pytest.raises(TracebusError, match=f"does not hold {shared.stream.subject_prefix}"):
        async with JetStreamPublisher(shared, "wf", "run-1", "p1"):
            pass
    await delete_stream(shared.servers[0], shared.stream.name)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_settings_are_passed_through(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = NatsServer(tmp_path / "js", ("--tls", "--tlscert", str(cert), "--tlskey", str(key)))
    server.start()
    try:
        base = NatsSettings(servers=(server.url,), stream=unique_stream(), connect_timeout=2.0)
        trusted = replace(base, tls=tls_context(cert))
        async with JetStreamPublisher(trusted, "wf", "run-1", "p1") as publisher:
            await publisher.send(EventFactory("wf", "run-1", "p1").workflow_start(0, ""))
            await publisher.flush()
        untrusted = replace(base, tls=tls_context(None))
        with pytest.raises(ServiceUnavailableError, match="cannot reach NATS"):
            async with JetStreamPublisher(untrusted, "wf", "run-1", "p1"):
                pass
        process = tracebus_cli(
            "serve", *stream_args(base), "--nats-tls-ca", str(cert), "--out", str(tmp_path / "o")
        )
        assert process.stderr is not None
        assert "consuming" in process.stderr.readline()
        process.terminate()
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    finally:
        server.stop()
