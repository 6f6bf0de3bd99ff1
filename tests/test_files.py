"""How a batch reaches the files: one vectored write per file, all from a worker thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio.lowlevel
import pytest

import tracebus
import tracebus._sinks._files as files
from tests.conftest import metadata_of, trace_of


async def _run(out: Path, nodes: int) -> tracebus.Observer:
    obs = tracebus.Observer("wf", out, total_nodes=nodes, progress=False, console=None)
    async with obs:
        for i in range(nodes):
            await obs.node_start(f"n{i}", i)
            await obs.node_success(f"n{i}", 0.01, output_summary={"i": i})
            await anyio.lowlevel.checkpoint()  # let the writer take small batches
    return obs


async def test_short_writes_are_continued_until_every_line_is_whole(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def writev_seven_bytes(fd: int, buffers: list[memoryview]) -> int:
        return os.write(fd, bytes(buffers[0][:7]))

    monkeypatch.setattr(files, "_writev", writev_seven_bytes)
    obs = await _run(out, 30)
    for path in (obs.trace_file, obs.audit_dir / "trace_00.jsonl"):
        assert len(trace_of(path)) == 62
    assert obs.log_file.read_text().count(" NODE_SUCCESS n") == 30
    assert metadata_of(obs.metadata_file)["events_written"] == 62


def _record_writer_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    writers: list[int] = []
    original = files._append_each

    def recording(work: list[tuple[int, list[bytes]]]) -> list[OSError | None]:
        writers.append(threading.get_ident())
        return original(work)

    monkeypatch.setattr(files, "_append_each", recording)
    return writers


async def test_the_loop_thread_never_writes(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writers = _record_writer_threads(monkeypatch)
    obs = await _run(out, 50)
    assert writers and threading.get_ident() not in writers
    assert len(trace_of(obs.trace_file)) == 102
    assert metadata_of(obs.metadata_file)["events_written"] == 102


def test_worker_thread_writes_on_trio_too(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writers = _record_writer_threads(monkeypatch)
    obs = anyio.run(_run, out, 40, backend="trio")
    assert writers and threading.get_ident() not in writers
    assert len(trace_of(obs.trace_file)) == 82
    assert metadata_of(obs.metadata_file)["events_written"] == 82
