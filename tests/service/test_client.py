"""The remote observer's API and failure modes, against a collector in the test's own loop."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import tracebus
from tests.conftest import Quiet
from tracebus._service._server import Collector
from tracebus._service._transport import UnixAddress

from .conftest import run_files, serving


async def _workflow(obs: Any) -> None:
    """The same calls, for an in-process and a remote observer."""
    async with obs.node("fetch", 0) as node:
        node.output({"rows": 3})
        node.cost(0.25)
    await obs.node_start("parse", 1)
    await obs.node_retry("parse", 1, error="flaky", delay_seconds=0.1)
    await obs.node_success("parse", 0.5, output_summary={"rows": 3}, cost_usd=0.5)
    with pytest.raises(ValueError):
        async with obs.node("load", 2):
            raise ValueError("disk on fire")
    await obs.node_skipped("report", reason="nothing to report")
    await obs.note("tokens used", node_id="parse", tokens=812)


_VARYING = {"timestamp", "epoch_seconds", "pid", "run_id", "producer", "seq", "output_dir"}
_VARYING_NUMBERS = {
    "duration_seconds",
    "total_time_seconds",
    "node_times",
    "trace_file",
    "log_file",
}


def _shape(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: (v if k not in _VARYING_NUMBERS else type(v).__name__) for k, v in e.items()}
        for e in ({k: v for k, v in e.items() if k not in _VARYING} for e in trace)
    ]


def _log_shape(path: Path) -> list[str]:
    text = path.read_text()
    text = re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.]+(\+00:00)?", "T", text)
    text = re.sub(r"[0-9a-f]{32}|PID: \d+|\"pid\":\d+|/\S+", "X", text)
    # durations are as short as the machine is fast: 0.0012, 9.5e-07 and 1e-06 alike
    text = re.sub(r"\d+(\.\d+)?e[-+]?\d+|\d+\.\d+", "N", text)
    return [line for line in text.splitlines() if not line.startswith("[T] PROGRESS")]


async def test_remote_run_files_look_like_an_in_process_run(
    tmp_path: Path, sockdir: Path, quiet: Quiet
) -> None:
    async with quiet.Observer("step_01_same", tmp_path / "local" / "runs", total_nodes=4) as local:
        await _workflow(local)
    # the summary names each file from the output directory's parent: the same name for both
    async with serving(tmp_path / "remote" / "runs", sockdir / "c.sock"):
        async with tracebus.connect(sockdir / "c.sock", "step_01_same", total_nodes=4) as remote:
            await _workflow(remote)

    local_trace, local_meta = run_files(tmp_path / "local" / "runs", "01")
    remote_trace, remote_meta = run_files(tmp_path / "remote" / "runs", "01")
    assert _shape(remote_trace) == _shape(local_trace)
    assert [e["seq"] for e in remote_trace] == [e["seq"] for e in local_trace]
    assert {e["producer"] for e in remote_trace} == {remote.producer}
    assert set(remote_meta) == set(local_meta)
    for key in ("status", "nodes_completed", "nodes_failed", "nodes_skipped", "nodes_retried",
                "total_nodes", "cumulative_cost_usd", "node_costs", "events_written"):  # fmt: skip
        assert remote_meta[key] == local_meta[key], key
    assert _log_shape(Path(remote_meta["execution_log_file"])) == _log_shape(
        Path(local_meta["execution_log_file"])
    )


async def test_an_error_in_the_block_ends_the_run_with_workflow_error(
    tmp_path: Path, sockdir: Path
) -> None:
    async with serving(tmp_path / "out", sockdir / "c.sock"):
        with pytest.raises(RuntimeError, match="boom"):
            async with tracebus.connect(sockdir / "c.sock", "step_02_err") as obs:
                await obs.node_start("a")
                raise RuntimeError("boom")
    trace, metadata = run_files(tmp_path / "out", "02")
    assert trace[-1]["event_type"] == "workflow_error"
    assert trace[-1]["error"] == "RuntimeError: boom"
    assert metadata["status"] == "error"


async def test_no_service_at_the_address(sockdir: Path) -> None:
    with pytest.raises(tracebus.ServiceUnavailableError, match="cannot reach the collector"):
        async with tracebus.connect(sockdir / "none.sock", "step_05_x"):
            pass


async def test_a_service_gone_for_good_is_reported_at_close(tmp_path: Path, sockdir: Path) -> None:
    socket = sockdir / "c.sock"
    collector = Collector(tmp_path / "out", address=UnixAddress(socket))
    stopped = anyio.Event()

    async def serve(*, task_status: Any) -> None:
        await collector.run(task_status=task_status)
        stopped.set()

    async with anyio.create_task_group() as service:
        await service.start(serve)
        with pytest.raises(
            tracebus.DeliveryError, match="gave up reconnecting after 0.3s"
        ) as failed:
            async with tracebus.connect(
                socket, "step_06_gone", reconnect_timeout=0.3, overflow="drop", capacity=10
            ) as obs:
                await obs.note("delivered")
                await obs.flush()
                collector.stop()
                await stopped.wait()
                for index in range(50):  # nobody listens: the queue fills, the rest is dropped
                    await obs.note(str(index))
    stats = obs.statistics()
    assert stats.delivered == 2
    assert stats.dropped > 0
    assert failed.value.undelivered == stats.undelivered + stats.dropped == 51  # + complete


async def test_emitting_outside_the_block_or_for_another_run_raises(
    tmp_path: Path, sockdir: Path
) -> None:
    obs = tracebus.connect(sockdir / "c.sock", "step_07_x")
    with pytest.raises(tracebus.BusClosedError, match="not open yet"):
        await obs.note("early")
    other = tracebus.connect(sockdir / "c.sock", "step_07_x")
    with pytest.raises(ValueError, match="belongs to run"):
        await obs.emit(other.events.note("x", None, {}))
    with pytest.raises(tracebus.InvalidIdError):
        tracebus.connect(sockdir / "c.sock", "../escape")
    with pytest.raises(ValueError, match="join=True needs the run_id"):
        tracebus.connect(sockdir / "c.sock", "step_07_x", join=True)


def test_service_and_observer_on_trio(tmp_path: Path, sockdir: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path / "out", sockdir / "c.sock"):
            async with tracebus.connect(sockdir / "c.sock", "step_08_trio", 3) as obs:
                for index in range(3):
                    async with obs.node(f"n{index}", index):
                        await anyio.lowlevel.checkpoint()

    anyio.run(main, backend="trio")
    _, metadata = run_files(tmp_path / "out", "08")
    assert metadata["nodes_completed"] == 3 and metadata["status"] == "complete"


class Boom(Exception):
    pass


class Unprintable(Boom):
    def __str__(self) -> str:
        raise RuntimeError("no text")


DESCRIBED = [
    (Boom(), "Boom"),
    (Boom("bad input"), "Boom: bad input"),
    (Boom(" "), "Boom"),
    (Unprintable(), "Unprintable"),
]


@pytest.mark.parametrize(("exc", "described"), DESCRIBED)
async def test_an_exception_is_described_alike_by_every_flavour(
    tmp_path: Path, sockdir: Path, exc: Boom, described: str, quiet: Quiet
) -> None:
    """Leaving any observer's block, or a node scope, with an exception records one text."""
    socket, local, remote = sockdir / "c.sock", tmp_path / "local", tmp_path / "remote"

    async def async_flavour(obs: Any) -> None:
        try:
            async with obs:
                with pytest.raises(Boom):
                    async with obs.node("n"):
                        raise exc
                raise exc
        except* Boom:
            pass

    def sync_flavour(make: Any) -> None:
        with pytest.raises(Boom):
            with make() as obs:
                obs.node_start("n")
                obs.node_failure("n", "stands for a node scope", 0.0)
                raise exc

    await async_flavour(quiet.Observer("step_21_async", local))
    await anyio.to_thread.run_sync(sync_flavour, lambda: quiet.SyncObserver("step_22_sync", local))
    async with serving(remote, socket):
        await async_flavour(tracebus.connect(socket, "step_23_remote"))
        await anyio.to_thread.run_sync(
            sync_flavour, lambda: tracebus.connect_sync(socket, "step_24_remote_sync")
        )
    for out, step in ((local, "21"), (local, "22"), (remote, "23"), (remote, "24")):
        trace, metadata = run_files(out, step)
        assert (trace[-1]["event_type"], trace[-1]["error"]) == ("workflow_error", described)
        assert metadata["error"] == described, step
        if step in ("21", "23"):
            (failure,) = (e for e in trace if e["event_type"] == "node_failure")
            assert failure["error"] == described, step


async def test_two_clients_overlapping_on_one_step_each_keep_their_metadata(
    tmp_path: Path, sockdir: Path
) -> None:
    out = tmp_path / "out"
    async with serving(out, sockdir / "c.sock"):
        async with tracebus.connect(sockdir / "c.sock", "wf_alpha") as first:
            await first.node_start("a", 0)
            await first.flush()
            async with tracebus.connect(sockdir / "c.sock", "wf_beta") as second:
                await second.node_success("b", 0.5)
            await first.node_success("a", 0.25)
    audit = out / "audit" / "step_00"
    (archived,) = (audit / "previous").iterdir()
    for obs, home, node in ((first, archived, "a"), (second, audit, "b")):
        metadata = json.loads((home / "metadata_00.json").read_text())
        assert metadata["run_id"] == obs.run_id and metadata["status"] == "complete"
        assert list(metadata["node_times"]) == [node]
        assert metadata["trace_file"] == str(home / "trace_00.jsonl")
        trace = tracebus.read_trace(home / "trace_00.jsonl")
        assert {event["run_id"] for event in trace} == {obs.run_id}
