"""How a batch reaches the files: one vectored write per file, all from a worker thread, and
a writeback hint as each file grows."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio.lowlevel
import pytest

import tracebus
import tracebus._sinks._files as files
from tests.conftest import Quiet, metadata_of, trace_of

pytestmark = pytest.mark.anyio


async def _run(quiet: Quiet, out: Path, nodes: int) -> tracebus.Observer:
    obs = quiet.Observer("wf", out, total_nodes=nodes)
    async with obs:
        for i in range(nodes):
            await obs.node_start(f"n{i}", i)
            await obs.node_success(f"n{i}", 0.01, output_summary={"i": i})
            await anyio.lowlevel.checkpoint()  # let the writer take small batches
    return obs


async def test_short_writes_are_continued_until_every_line_is_whole(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    def writev_seven_bytes(fd: int, buffers: list[memoryview]) -> int:
        return os.write(fd, bytes(buffers[0][:7]))

    monkeypatch.setattr(files, "_writev", writev_seven_bytes)
    obs = await _run(quiet, out, 30)
    for path in (obs.trace_file, obs.audit_dir / "trace_00.jsonl"):
        assert len(trace_of(path)) == 62
    assert obs.log_file.read_text().count(" NODE_SUCCESS n") == 30
    assert metadata_of(obs.metadata_file)["events_written"] == 62


def _record_writer_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    writers: list[int] = []
    original = files._append_each

    def recording(work: list[tuple[int, list[bytes], bool]]) -> list[OSError | None]:
        writers.append(threading.get_ident())
        return original(work)

    monkeypatch.setattr(files, "_append_each", recording)
    return writers


async def test_the_loop_thread_never_writes(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    writers = _record_writer_threads(monkeypatch)
    obs = await _run(quiet, out, 50)
    assert writers and threading.get_ident() not in writers
    assert len(trace_of(obs.trace_file)) == 102
    assert metadata_of(obs.metadata_file)["events_written"] == 102


def _record_writeback_hints(
    monkeypatch: pytest.MonkeyPatch, every: int, error: OSError | None = None
) -> list[tuple[str, int]]:
    """Hint every ``every`` bytes; record (file name, advice) per hint, raising ``error``."""
    hints: list[tuple[str, int]] = []

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        assert (offset, length) == (0, 0)  # the whole file
        hints.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, advice))
        if error is not None:
            raise error

    monkeypatch.setattr(files, "WRITEBACK_BYTES", every)
    monkeypatch.setattr(files, "_fadvise", fadvise)
    return hints


async def test_each_file_is_handed_to_writeback_as_it_grows(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    hints = _record_writeback_hints(monkeypatch, every=4_096)
    obs = await _run(quiet, out, 200)
    names = {name for name, _ in hints}
    layout = obs.layout
    files_of_run = (layout.trace_file, layout.log_file)  # the audit copies are links of these
    assert names == {path.name for path in files_of_run}
    assert {advice for _, advice in hints} == {os.POSIX_FADV_DONTNEED}
    # at most one hint per batch, and none before a file has grown by 4 KiB
    trace_hints = sum(1 for name, _ in hints if name == obs.trace_file.name)
    assert 1 <= trace_hints <= obs.trace_file.stat().st_size // 4_096
    assert len(trace_of(obs.trace_file)) == 402


async def test_a_run_smaller_than_the_writeback_step_gets_no_hint(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    hints = _record_writeback_hints(monkeypatch, every=1_000_000)
    obs = await _run(quiet, out, 200)
    assert hints == [] and len(trace_of(obs.trace_file)) == 402


async def test_a_refused_writeback_hint_loses_nothing(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    hints = _record_writeback_hints(monkeypatch, every=1, error=OSError(22, "Invalid argument"))
    obs = await _run(quiet, out, 20)
    assert hints
    assert len(trace_of(obs.trace_file)) == 42
    metadata = metadata_of(obs.metadata_file)
    assert metadata["events_written"] == 42 and metadata["write_errors"] == {}
