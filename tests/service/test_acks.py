"""Acknowledged means written: a full disk makes the service answer "not written", the
producer keeps those events and sends them again, and its close names what never got in."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import tracebus
from tracebus._factory import EventFactory
from tracebus._service._protocol import Ack, ErrorReply

from .conftest import RawClient, Service, batch, numbered, run_files, seqs_by_producer

NODES = 10_000  # 20,002 events with the run's start and end
#: The largest file the service may write while "the disk is full": room for ~700 events.
FILE_LIMIT = 200_000


def _emit(obs: tracebus.SyncRemoteObserver) -> None:
    for index in range(NODES):
        obs.node_start(f"n{index}", index)
        obs.node_success(f"n{index}", 0.001)


def _until_refused_or_flushed(service: Service, obs: tracebus.SyncRemoteObserver) -> None:
    """Return once the service said it could not write, or once everything was acknowledged
    anyway (the files lack what the full disk refused: the assertions below say so)."""
    flushed = threading.Event()

    def flush() -> None:
        obs.flush()
        flushed.set()

    threading.Thread(target=flush, daemon=True).start()
    deadline = time.monotonic() + 60
    while not flushed.is_set() and "the trace refused a write" not in service.log.read_text():
        assert time.monotonic() < deadline, service.log.read_text()
        time.sleep(0.05)


def _full(tmp_path: Path, sockdir: Path) -> Service:
    return Service(
        tmp_path / "out",
        sockdir / "c.sock",
        rlimits={resource.RLIMIT_FSIZE: (FILE_LIMIT, resource.RLIM_INFINITY)},
    ).start()


def test_events_the_full_disk_refused_are_not_acknowledged_and_close_names_them(
    tmp_path: Path, sockdir: Path
) -> None:
    service = _full(tmp_path, sockdir)
    try:
        obs = tracebus.connect_sync(
            service.socket, "step_01_full", NODES, producer="p", close_timeout=3
        )
        _emit(obs)
        with pytest.raises(tracebus.DeliveryError) as failed:
            obs.close()
        stats = obs.statistics()
        status = service.status()
    finally:
        service.close()

    assert stats.emitted == 2 * NODES + 2
    assert 0 < stats.delivered < stats.emitted
    assert failed.value.undelivered == stats.emitted - stats.delivered
    assert failed.value.rejected == 0
    assert f"{failed.value.undelivered} undelivered" in str(failed.value)
    assert "write_failed" in str(failed.value)  # the collector's last answer

    trace, metadata = run_files(service.out, "01")
    # what was acknowledged is in the trace, in order, once; nothing else is
    assert seqs_by_producer(trace) == {"p": list(range(1, stats.delivered + 1))}
    assert metadata["status"] == "incomplete"
    assert "File too large" in metadata["write_errors"][metadata["execution_trace_file"]]["error"]
    assert status["events_unwritten"] > 0 and status["errors"]["write_failed"] >= 1
    log = service.log.read_text()
    assert "the trace refused a write" in log
    assert "events were not written" in log


def test_once_the_disk_has_room_the_refused_events_are_sent_again_and_written_once(
    tmp_path: Path, sockdir: Path
) -> None:
    service = _full(tmp_path, sockdir)
    try:
        with tracebus.connect_sync(
            service.socket, "step_02_room", NODES, producer="p", reconnect_timeout=120
        ) as obs:
            _emit(obs)
            _until_refused_or_flushed(service, obs)
            service.lift_limit(resource.RLIMIT_FSIZE)
        stats = obs.statistics()
    finally:
        service.close()

    trace, metadata = run_files(service.out, "02")
    assert seqs_by_producer(trace) == {"p": list(range(1, 2 * NODES + 3))}
    assert stats.delivered == stats.emitted == 2 * NODES + 2
    assert stats.reconnects >= 1  # sent again after the refusals
    assert metadata["status"] == "complete"
    assert metadata["nodes_completed"] == NODES
    assert metadata["events_written"] == 2 * NODES + 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, where mounting one is allowed (root with CAP_SYS_ADMIN)."""
    where = tmp_path / "disk"
    where.mkdir()
    mount = shutil.which("mount")
    done = mount is not None and (
        os.geteuid() == 0
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )
    if not done:
        pytest.skip("mounting a tmpfs is not allowed here (the RLIMIT_FSIZE tests cover it)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_really_full_disk_then_freed_loses_nothing(small_disk: Path, sockdir: Path) -> None:
    filler = small_disk / "filler"
    with open(filler, "wb") as handle:  # leave ~150 KiB free
        handle.truncate(0)
        free = shutil.disk_usage(small_disk).free
        handle.write(b"\0" * (free - 150_000))
    service = Service(small_disk / "out", sockdir / "c.sock").start()
    try:
        run_id = uuid.uuid4().hex
        with tracebus.connect_sync(
            service.socket, "step_03_enospc", NODES, run_id=run_id, reconnect_timeout=120
        ) as obs:
            _emit(obs)
            _until_refused_or_flushed(service, obs)
            filler.unlink()
        stats = obs.statistics()
    finally:
        service.close()
    assert stats.delivered == stats.emitted == 2 * NODES + 2
    trace, metadata = run_files(service.out, "03")
    assert [e["seq"] for e in trace] == list(range(1, 2 * NODES + 3))
    assert metadata["status"] == "complete"
    assert "No space left on device" in service.log.read_text()


async def test_a_batch_refused_while_decoding_is_named_so_no_later_ack_settles_it(
    service: Service,
) -> None:
    """Acknowledgements are cumulative: a refusal naming no batch would let the next one
    tell the client that the refused batch was written."""
    events = EventFactory("step_04_named", "named", "raw")
    client = await RawClient.connect(service.socket)
    await client.send(batch(1, numbered([events.workflow_start(1, "")]), "step_04_named", "named"))
    note = msgspec.to_builtins(numbered([events.note("x", None, {})], first=2)[0])
    note["message"] = 42  # a wrong type
    body = msgspec.msgpack.encode(
        {"kind": "batch", "id": 2, "workflow_id": "step_04_named", "run_id": "named",
         "events": [note]}
    )  # fmt: skip
    await client.send_raw(len(body).to_bytes(4, "big") + body)
    fine = numbered([events.note("y", None, {})], first=3)
    await client.send(batch(3, fine, "step_04_named", "named"))
    replies = [await client.receive() for _ in range(3)]
    await client.aclose()
    assert replies[0] == Ack(id=1) and replies[2] == Ack(id=3)
    refused = replies[1]
    assert isinstance(refused, ErrorReply)
    assert (refused.code, refused.id) == ("invalid_event", 2)
