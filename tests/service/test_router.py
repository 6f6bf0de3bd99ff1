"""The router: a run is opened by its start, joined afterwards and refused once ended, and
has one writer, even with two services on one output directory."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import tracebus
from tracebus._lock import run_is_locked

from .conftest import Service, run_files, serving


async def test_joining_needs_an_open_run_and_one_opener_per_run(
    tmp_path: Path, sockdir: Path
) -> None:
    socket = sockdir / "c.sock"
    async with serving(tmp_path / "out", socket) as collector:
        with pytest.raises(tracebus.ServiceError, match="run_not_open") as refused:
            async with tracebus.connect(socket, "step_03_j", run_id="nope", join=True):
                pass
        assert "is not open" in refused.value.message
        async with tracebus.connect(socket, "step_03_j", run_id="r1") as opener:
            with pytest.raises(tracebus.ServiceError, match="run_exists"):
                async with tracebus.connect(socket, "step_03_j", run_id="r1"):
                    pass
            async with tracebus.connect(socket, "step_03_j", run_id="r1", join=True) as joiner:
                await joiner.note("joined")
            await opener.note("still open")
        assert collector.statistics()["errors"] == {"run_not_open": 1, "run_exists": 1}
    trace, _ = run_files(tmp_path / "out", "03")
    assert [e["event_type"] for e in trace] == [
        "workflow_start",
        "note",
        "note",
        "workflow_complete",
    ]


async def test_events_after_the_run_ended_are_refused(tmp_path: Path, sockdir: Path) -> None:
    socket = sockdir / "c.sock"
    async with serving(tmp_path / "out", socket):
        async with tracebus.connect(socket, "step_04_late", run_id="r") as opener:
            with pytest.raises(tracebus.DeliveryError, match="run_ended") as failed:
                async with tracebus.connect(socket, "step_04_late", run_id="r", join=True) as j:
                    await opener.workflow_complete()
                    await opener.flush()
                    await j.note("too late")
        assert failed.value.rejected == 1
        assert opener.statistics().delivered == 2
    trace, _ = run_files(tmp_path / "out", "04")
    assert [e["event_type"] for e in trace] == ["workflow_start", "workflow_complete"]


async def test_two_services_on_one_output_directory_never_write_one_run(
    tmp_path: Path, sockdir: Path
) -> None:
    out = tmp_path / "out"
    first = Service(out, sockdir / "a.sock").start()
    second = Service(out, sockdir / "b.sock").start()
    try:
        run_id = uuid.uuid4().hex
        async with tracebus.connect(
            first.socket, "step_04_lock", run_id=run_id, producer="opener"
        ) as opener:
            await opener.note("on the first service")
            await opener.flush()
            assert run_is_locked(out, "step_04_lock", run_id)

            with pytest.raises(tracebus.ServiceUnavailableError, match="run_locked") as refused:
                async with tracebus.connect(
                    second.socket, "step_04_lock", run_id=run_id, join=True,
                    producer="joiner", reconnect_timeout=1.0,
                ) as joiner:  # fmt: skip
                    await joiner.note("through the second service")
            assert first.process is not None
            assert f"process {first.process.pid} is writing this run" in str(refused.value)
            await opener.note("still the only writer")
        assert not run_is_locked(out, "step_04_lock", run_id)
        status = await second.astatus()
        assert status["runs_resumed"] == 0 and status["errors"]["run_locked"] >= 1
    finally:
        first.close()
        second.close()
    trace, metadata = run_files(out, "04")
    assert [e.get("message") for e in trace if e["event_type"] == "note"] == [
        "on the first service",
        "still the only writer",
    ]
    assert metadata["status"] == "complete" and metadata["write_errors"] == {}
