"""Following a live run: one readable line per event until the run ends.

The trace is polled: new bytes are read, complete lines printed, a partial last line held
until its newline arrives. A trace that shrinks (the writer rolled back a failed write) is
read on from its new end. An output directory is polled too, for a run to begin in it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

import msgspec

from .._exceptions import TraceFormatError
from ._find import find_trace, latest_trace
from ._lines import BlockDecoder, scan_block
from ._reader import decode_line
from ._tail_text import (
    SHOWN_TYPES,
    Event,
    ShownFields,
    TailLine,
    as_line,
    format_events,
    plain_json,
    shown_problem,
)

_TERMINAL = ("workflow_complete", "workflow_error")
#: Bytes read from the trace at a time: the lines in them are decoded and printed together.
READ_BYTES = 1 << 20


@dataclass
class TailResult:
    """How the followed run ended: ``status`` is None when the wait timed out, and ``trace``
    None when no run began before it did."""

    status: str | None = None
    error: str | None = None
    failed: set[str] = field(default_factory=set)
    events: int = 0
    trace: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "complete" and not self.failed


def follow(
    path: str | os.PathLike[str],
    emit: Callable[[str], None],
    *,
    poll: float = 0.1,
    timeout: float | None = None,
    latest: bool = False,
    notify: Callable[[str], None] = lambda text: None,
) -> TailResult:
    """Print (through ``emit``) each event of a run as it is written, from the first, until
    workflow_complete or workflow_error, or until ``timeout`` seconds pass with nothing new.
    ``emit`` is given the lines of the events read together, each ending with a newline.

    A trace file, a metadata file or an audit step directory names its run. Any other
    ``path`` is an output directory, which need not exist yet: its run in progress (the
    newest run, when its trace has not ended) is followed, else the next run to begin in it,
    and a newer run that begins before the followed one ends is followed instead (``notify``
    says so). With ``latest``, an output directory's newest run is followed, ended or not.

    Raises RunNotFoundError for a path that holds no run (with ``latest``), TraceFormatError
    for a complete line that is not a JSON object, and OSError when a trace cannot be read.
    """
    result = TailResult()
    clock = _Clock(timeout)
    given = Path(path)
    if latest or _names_a_run(given):
        trace = find_trace(given)
        while trace is None:
            if clock.expired():
                return result
            time.sleep(poll)
            trace = find_trace(given)
        _follow_trace(trace, emit, result, clock, poll)
        return result
    seen: set[_Identity] = set()
    trace = _newest_trace(given, seen)
    if trace is not None and _ended(trace):
        trace = None
    if trace is None:
        notify(f"waiting for a run to begin in {given}")
    while trace is None:
        if clock.expired():
            return result
        time.sleep(poll)
        trace = _newest_trace(given, seen)
    while (newer := _follow_trace(trace, emit, result, clock, poll, given, seen)) is not None:
        notify(f"a newer run began: following {newer}")
        trace = newer
    return result


class _Clock:
    """How long it has been since something new happened, against the timeout."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.news()

    def news(self) -> None:
        self.last_news = time.monotonic()

    def expired(self) -> bool:
        return self.timeout is not None and time.monotonic() - self.last_news >= self.timeout


#: A trace as found on disk: its path, device and inode (an audit trace's path is reused).
_Identity = tuple[Path, int, int]


def _names_a_run(path: Path) -> bool:
    """A file (trace or metadata), or an audit step directory: not an output directory."""
    return path.is_file() or (path.is_dir() and any(path.glob("trace_*.jsonl")))


def _newest_trace(output_dir: Path, seen: set[_Identity]) -> Path | None:
    """The output directory's newest trace if it was not seen before (now it is)."""
    try:
        trace = latest_trace(output_dir)
        if trace is None:
            return None
        info = trace.stat()
    except OSError:  # moved away by a rerun while we looked: look again at the next poll
        return None
    identity = (trace, info.st_dev, info.st_ino)
    if identity in seen:
        return None
    seen.add(identity)
    return trace


def _ended(trace: Path) -> bool:
    """Whether the trace's last complete line is a workflow_complete or workflow_error."""
    line = _last_line(trace)
    if line is None:
        return False
    try:
        return decode_line(0, line, trace).get("event_type") in _TERMINAL
    except TraceFormatError:
        return False


def _last_line(path: Path) -> bytes | None:
    """The last complete, non-blank line of a file, read from its end."""
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        tail, chunk = b"", 64 * 1024
        while position > 0:
            size = min(chunk, position)
            position -= size
            handle.seek(position)
            tail = handle.read(size) + tail
            chunk *= 2  # a line of megabytes (a big node_times) is read in few steps
            whole = tail[: tail.rfind(b"\n") + 1].rstrip()
            if whole and ((start := whole.rfind(b"\n")) >= 0 or position == 0):
                return whole[start + 1 :]
    return None


def _follow_trace(
    trace: Path,
    emit: Callable[[str], None],
    result: TailResult,
    clock: _Clock,
    poll: float,
    output_dir: Path | None = None,
    seen: set[_Identity] | None = None,
) -> Path | None:
    """Follow ``trace`` until its run ends or the clock expires (None), or, watching
    ``output_dir``, until a newer run begins there: its trace."""
    result.trace = trace
    # The last event read ends the run: the end, unless more events follow at once. Blank
    # lines are no events: they neither end the run, nor keep it going, nor count as news.
    ended = False
    with open(trace, "rb") as handle:
        appended = AppendedLines(handle)
        while True:
            block = appended.read_block()
            events: list[Event] = []
            bad = None
            if block is not None and block.lines:
                events, bad = decode_events(block, trace)
            if events:
                clock.news()
                ended = _record(result, events)
                assert block is not None
                emit(format_events(events, plain_json(block.data)))
            if bad is not None:
                raise bad
            if events:
                continue
            if ended:
                return None
            if block is None and output_dir is not None and seen is not None:
                newer = _newest_trace(output_dir, seen)
                if newer is not None:
                    clock.news()
                    return newer
            if clock.expired():
                return None
            if block is None:
                time.sleep(poll)


def decode_events(
    block: Block, path: str | os.PathLike[str]
) -> tuple[list[Event], TraceFormatError | None]:
    """The block's lines, blank ones skipped: TailLines, but dicts for event types
    ``format_event`` does not know. Up to the first line that is not a JSON object, breaks
    the value rules or holds a field its line cannot show (``shown_problem``), if one does:
    then also the error that names it, as ``read_trace`` would.
    """
    return _TAIL_LINES.block(block.data, block.first, path, (block.too_deep, block.lines))


def _checked(number: int, raw: bytes, path: str | os.PathLike[str]) -> Event:
    event = decode_line(number, raw, path)
    problem = shown_problem(event)
    if problem is not None:
        raise TraceFormatError(f"{os.fspath(path)}:{number}: {problem}")
    return event


_TAIL_LINES: BlockDecoder[Event] = BlockDecoder(TailLine, _checked, SHOWN_TYPES)


class Block(NamedTuple):
    """Complete lines read from a trace."""

    #: the number of the first line in the file
    first: int
    #: the lines, each ending with a newline
    data: bytes
    #: how many lines (blank ones too)
    lines: int
    #: whether a line may nest deeper than a trace line may (see ``scan_block``)
    too_deep: bool


class AppendedLines:
    """The complete lines appended to an open trace since the last read, numbered from the
    file's first; a partial last line is held until its newline arrives, and a file that
    shrinks (a rolled-back write) is read on from its new end."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.position = 0
        self.number = 0
        self._pending = b""

    def read_block(self, limit: int = READ_BYTES) -> Block | None:
        """The new complete lines (at most ``limit`` bytes read); None when nothing was
        appended. Raises OSError when the file cannot be read."""
        chunk = self.handle.read(limit)
        if not chunk:
            size = os.fstat(self.handle.fileno()).st_size
            if size < self.position:
                self.handle.seek(size)
                self.position, self._pending = size, b""
            return None
        self.position += len(chunk)
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        data, self._pending = data[:cut], data[cut:]
        too_deep, count = scan_block(data)
        first = self.number + 1
        self.number += count
        return Block(first, data, count, too_deep)

    def read(self, limit: int = READ_BYTES) -> list[tuple[int, bytes]] | None:
        """The new non-blank complete lines, numbered (see ``read_block``)."""
        block = self.read_block(limit)
        if block is None:
            return None
        lines = block.data.split(b"\n")
        del lines[-1]
        return [(block.first + i, raw) for i, raw in enumerate(lines) if raw.strip()]


def _record(result: TailResult, events: list[Event]) -> bool:
    """Count ``events`` into ``result``; whether the last one ends the run."""
    result.events += len(events)
    kind = None
    for event in events:
        line = event if type(event) is TailLine else as_line(event)
        kind = line.event_type
        if kind in _STANDING:
            _stand(result, kind, line)
    return kind in _TERMINAL


#: The events that change how the run stands.
_STANDING = frozenset(
    {"node_failure", "node_success", "node_skipped", *_TERMINAL, "workflow_start"}
)


def _stand(result: TailResult, kind: str, line: ShownFields) -> None:
    node_id = line.node_id
    if node_id is msgspec.UNSET:
        node_id = None
    if kind == "node_failure" and node_id is not None:
        result.failed.add(str(node_id))
    elif kind in ("node_success", "node_skipped") and node_id is not None:
        result.failed.discard(str(node_id))
    elif kind == "workflow_start":
        result.status, result.error = None, None
        result.failed.clear()
    elif kind == "workflow_error":
        error = line.error
        result.status, result.error = "error", str("" if error is msgspec.UNSET else error)
    elif kind == "workflow_complete" and result.status != "error":
        result.status = "complete"
