"""How a batch reaches the files: one vectored write per file, all from a worker thread, and
a writeback hint as each file grows."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from tracebus._sinks._files import AppendFile, BatchAppender, FileCalls

pytestmark = pytest.mark.anyio


def _batch(first: int, count: int) -> list[bytes]:
    return [
        f'{{"seq": {seq}, "message": "{"x" * 60}"}}\n'.encode()
        for seq in range(first, first + count)
    ]


async def _append(
    paths: Sequence[Path], calls: FileCalls, batches: int, per_batch: int = 2
) -> tuple[list[AppendFile], bytes]:
    """Append ``batches`` batches of ``per_batch`` lines to every file, as the writer does;
    return the files, closed, and the bytes each should hold."""
    files = [AppendFile(path) for path in paths]
    for file in files:
        await file.open()
    appender = BatchAppender(calls)
    written: list[bytes] = []
    for index in range(batches):
        chunks = _batch(index * per_batch, per_batch)
        written += chunks
        await appender.append([(file, chunks, per_batch) for file in files])
    for file in files:
        await file.aclose()
    return files, b"".join(written)


def _assert_whole(files: list[AppendFile], expected: bytes) -> None:
    for file in files:
        assert file.path.read_bytes() == expected
        assert (file.error, file.lost, file.written) == (None, 0, expected.count(b"\n"))


async def test_short_writes_are_continued_until_every_line_is_whole(tmp_path: Path) -> None:
    def writev_seven_bytes(fd: int, buffers: Sequence[memoryview]) -> int:
        return os.write(fd, bytes(buffers[0][:7]))

    paths = [tmp_path / "trace.jsonl", tmp_path / "run.log"]
    files, expected = await _append(paths, FileCalls(writev=writev_seven_bytes), batches=30)
    _assert_whole(files, expected)


async def test_the_loop_thread_never_writes(tmp_path: Path) -> None:
    writers: list[int] = []

    def writev(fd: int, buffers: Sequence[memoryview]) -> int:
        writers.append(threading.get_ident())
        return os.writev(fd, buffers)

    files, expected = await _append([tmp_path / "trace.jsonl"], FileCalls(writev=writev), 50)
    assert writers and threading.get_ident() not in writers
    _assert_whole(files, expected)


def _hinting(every: int, error: OSError | None = None) -> tuple[FileCalls, list[tuple[str, int]]]:
    """Calls that hint every ``every`` bytes and record (file name, advice) per hint,
    raising ``error``."""
    hints: list[tuple[str, int]] = []

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        assert (offset, length) == (0, 0)  # the whole file
        hints.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, advice))
        if error is not None:
            raise error

    return FileCalls(fadvise=fadvise, writeback_bytes=every), hints


async def test_each_file_is_handed_to_writeback_as_it_grows(tmp_path: Path) -> None:
    calls, hints = _hinting(every=4_096)
    paths = [tmp_path / "trace.jsonl", tmp_path / "run.log"]
    files, expected = await _append(paths, calls, batches=200)
    assert {name for name, _ in hints} == {"trace.jsonl", "run.log"}
    assert {advice for _, advice in hints} == {os.POSIX_FADV_DONTNEED}
    # at most one hint per batch, and none before a file has grown by 4 KiB
    trace_hints = sum(1 for name, _ in hints if name == "trace.jsonl")
    assert 1 <= trace_hints <= len(expected) // 4_096
    _assert_whole(files, expected)


async def test_a_file_smaller_than_the_writeback_step_gets_no_hint(tmp_path: Path) -> None:
    calls, hints = _hinting(every=1_000_000)
    files, expected = await _append([tmp_path / "trace.jsonl"], calls, batches=200)
    assert hints == []
    _assert_whole(files, expected)


async def test_a_refused_writeback_hint_loses_nothing(tmp_path: Path) -> None:
    calls, hints = _hinting(every=1, error=OSError(22, "Invalid argument"))
    files, expected = await _append([tmp_path / "trace.jsonl"], calls, batches=20)
    assert len(hints) == 20  # one per batch
    _assert_whole(files, expected)
