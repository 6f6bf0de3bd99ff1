"""tracebus.connect("nats://...") against real servers: unreachable, restarted, full,
refused; credentials and TLS."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

import tracebus
from tracebus import BackendError, DeliveryError, NatsSettings, ServiceUnavailableError
from tracebus._nats._settings import tls_context

from .conftest import (
    Collector,
    NatsServer,
    delete_stream,
    free_port,
    trace_lines,
    tracebus_cli,
    unique_stream,
    wait_for_metadata,
)


async def test_unreachable_nats_at_start_is_a_clear_error() -> None:
    settings = NatsSettings(servers=(f"nats://127.0.0.1:{free_port()}",))
    observer = tracebus.connect(settings, "wf", connect_timeout=1.0)
    with pytest.raises(ServiceUnavailableError, match=r"cannot reach NATS at nats://127\.0\.0\.1"):
        async with observer:
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
    async def enter() -> None:
        async with tracebus.connect("nats://127.0.0.1:4222", "wf"):
            pass

    with pytest.raises(BackendError, match="asyncio only"):
        anyio.run(enter, backend="trio")


async def test_nats_stopped_mid_run_and_restarted_observer_recovers(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    settings = NatsSettings(servers=(own_nats.url,), stream=unique_stream())
    observer = tracebus.connect(
        settings, "wf-restart", 9_000, producer="p1", resend_buffer=5_000, reconnect_timeout=60.0
    )
    async with observer:
        for index in range(3_000):
            await observer.node_start(f"n{index}", index)
        await observer.flush()
        own_nats.stop()
        for index in range(3_000, 6_000):  # within the bound: 5,000 unacknowledged + the queue
            await observer.node_start(f"n{index}", index)
        own_nats.start()
        for index in range(6_000, 9_000):
            await observer.node_start(f"n{index}", index)
    stats = observer.statistics()
    assert stats.delivered == stats.emitted == 9_002
    assert stats.reconnects >= 1 and stats.dropped == stats.undelivered == 0

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


async def test_events_past_the_bound_while_nats_is_down_are_reported(own_nats: NatsServer) -> None:
    settings = NatsSettings(servers=(own_nats.url,), stream=unique_stream())
    observer = tracebus.connect(
        settings, "wf-bound", producer="p1", capacity=1_000, resend_buffer=1_000, overflow="drop"
    )
    with pytest.raises(DeliveryError) as caught:
        async with observer:
            await observer.flush()
            own_nats.stop()
            for index in range(3_000):
                await observer.node_start(f"n{index}", index)
            own_nats.start()
    stats = observer.statistics()
    assert 1_000 <= stats.dropped <= 2_000  # at most 2,000 held: resend buffer and queue
    assert caught.value.undelivered == stats.dropped and caught.value.rejected == 0
    assert f"{stats.dropped} dropped while the queue was full" in str(caught.value)
    assert stats.delivered == stats.emitted and stats.emitted + stats.dropped == 3_002


async def test_observer_gives_up_after_reconnect_timeout_and_close_says_so(
    own_nats: NatsServer,
) -> None:
    settings = NatsSettings(servers=(own_nats.url,), stream=unique_stream())
    observer = tracebus.connect(
        settings, "wf-gone", producer="p1", reconnect_timeout=1.0, close_timeout=5.0
    )
    with pytest.raises(DeliveryError, match="gave up reconnecting after 1s") as caught:
        async with observer:
            await observer.flush()
            own_nats.stop()
            for index in range(10):
                await observer.node_start(f"n{index}", index)
            with pytest.raises(ServiceUnavailableError, match="gave up"):
                await observer.flush()
    assert caught.value.undelivered == 11  # the ten and the workflow_complete


def test_sync_twin_publishes_through_nats(shared: NatsSettings, tmp_path: Path) -> None:
    with tracebus.connect_sync(shared, "wf-sync", 100, producer="p1") as observer:
        for index in range(100):
            observer.node_start(f"n{index}", index)
            observer.node_success(f"n{index}", 0.001)
    out = tmp_path / "out"
    collector = Collector(shared, out)
    collector.start()
    try:
        metadata = wait_for_metadata(out)
    finally:
        collector.stop()
    assert metadata["nodes_completed"] == 100 and metadata["events_written"] == 202


@pytest.mark.parametrize("how", ["password", "token"])
async def test_credentials_from_files_and_environment(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch, collectors: list[Collector]
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
        async with tracebus.connect(good, "wf", connect_timeout=2.0) as observer:
            await observer.flush()
        assert "s3cret" not in repr(good) and "t0ken" not in repr(good)

        wrong = base.with_credentials(
            environ={"TRACEBUS_NATS_USER": "svc", "TRACEBUS_NATS_PASSWORD": "wrong"}
            if how == "password"
            else {"TRACEBUS_NATS_TOKEN": "wrong"}
        )
        with pytest.raises(ServiceUnavailableError, match="refused the credentials"):
            async with tracebus.connect(wrong, "wf", connect_timeout=2.0):
                pass

        flag = ["--nats-password-file", str(secret), "--nats-user", "svc"]
        if how == "token":
            flag = ["--nats-token-file", str(secret)]
        collector = Collector(good, tmp_path / "out", *flag)
        collectors.append(collector)
        collector.start()  # connected with the credentials: it says it is consuming
        collector.stop()  # SIGTERM, exit code 0
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
    with pytest.raises(
        ServiceUnavailableError, match=f"does not hold {shared.stream.subject_prefix}"
    ):
        async with tracebus.connect(shared, "wf"):
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
    tmp_path: Path, certificate: tuple[Path, Path], collectors: list[Collector]
) -> None:
    cert, key = certificate
    server = NatsServer(tmp_path / "js", ("--tls", "--tlscert", str(cert), "--tlskey", str(key)))
    server.start()
    try:
        base = NatsSettings(servers=(server.url,), stream=unique_stream(), connect_timeout=2.0)
        trusted = replace(base, tls=tls_context(cert))
        async with tracebus.connect(trusted, "wf", connect_timeout=2.0) as observer:
            await observer.flush()
        untrusted = replace(base, tls=tls_context(None))
        with pytest.raises(ServiceUnavailableError, match="cannot reach NATS"):
            async with tracebus.connect(untrusted, "wf", connect_timeout=2.0):
                pass
        collector = Collector(base, tmp_path / "o", "--nats-tls-ca", str(cert))
        collectors.append(collector)
        collector.start()
        collector.stop()  # SIGTERM, exit code 0
    finally:
        server.stop()
