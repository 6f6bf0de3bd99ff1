"""Following a live run: one readable line per event until the run ends.

The trace is polled: new bytes are read, complete lines printed, a partial last line held
until its newline arrives. A trace that shrinks (the writer rolled back a failed write) is
read on from its new end. An output directory is polled too, for a run to begin in it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from .._events import COMMON_FIELDS
from .._exceptions import TraceFormatError
from .._text import one_line, printable
from ._find import find_trace, latest_trace
from ._reader import decode_line

_TERMINAL = ("workflow_complete", "workflow_error")
_WIDTH = len("workflow_complete")


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
    with open(trace, "rb") as handle:
        appended = AppendedLines(handle)
        while True:
            lines = appended.read()
            if lines is None:
                if output_dir is not None and seen is not None:
                    newer = _newest_trace(output_dir, seen)
                    if newer is not None:
                        clock.news()
                        return newer
                if clock.expired():
                    return None
                time.sleep(poll)
                continue
            clock.news()
            ended = False
            for number, raw in lines:
                event = decode_line(number, raw, trace)
                ended = _record(result, event)
                emit(format_event(event))
            if ended:
                return None


class AppendedLines:
    """The complete lines appended to an open trace since the last ``read``, numbered from
    the file's first; a partial last line is held until its newline arrives, and a file that
    shrinks (a rolled-back write) is read on from its new end."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.position = 0
        self.number = 0
        self._pending = b""

    def read(self, limit: int = -1) -> list[tuple[int, bytes]] | None:
        """The new non-blank complete lines (at most ``limit`` bytes read), or None when
        nothing was appended. Raises OSError when the file cannot be read."""
        chunk = self.handle.read(limit)
        if not chunk:
            size = os.fstat(self.handle.fileno()).st_size
            if size < self.position:
                self.handle.seek(size)
                self.position, self._pending = size, b""
            return None
        self.position += len(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        numbered = []
        for raw in lines:
            self.number += 1
            if raw.strip():
                numbered.append((self.number, raw))
        return numbered


def _record(result: TailResult, event: Mapping[str, Any]) -> bool:
    result.events += 1
    kind = event.get("event_type")
    node_id = event.get("node_id")
    if kind == "node_failure" and node_id is not None:
        result.failed.add(str(node_id))
    elif kind in ("node_success", "node_skipped") and node_id is not None:
        result.failed.discard(str(node_id))
    elif kind == "workflow_start":
        result.status, result.error = None, None
        result.failed.clear()
    elif kind == "workflow_error":
        result.status, result.error = "error", str(event.get("error", ""))
    elif kind == "workflow_complete" and result.status != "error":
        result.status = "complete"
    return kind in _TERMINAL


def format_event(event: Mapping[str, Any]) -> str:
    """``HH:MM:SS.mmm  event_type  what happened``; failures and errors in capitals. One
    line, its control characters escaped (``printable``)."""
    kind = str(event.get("event_type", "?"))
    label = kind.upper() if kind in ("node_failure", "workflow_error", "encode_error") else kind
    return printable(f"{_clock(event)}  {label:<{_WIDTH}}  {_what(kind, event)}".rstrip())


def _what(kind: str, e: Mapping[str, Any]) -> str:
    node = str(e.get("node_id", ""))
    if kind == "workflow_start":
        run = f" (run {e['run_id']})" if e.get("run_id") else ""
        return f"{e.get('workflow_id', '')}: {e.get('total_nodes', '?')} nodes{run}"
    if kind == "node_start":
        index = e.get("node_index")
        return node + (f" [{index}]" if index is not None else "")
    if kind == "node_success":
        parts = [node, _duration(e.get("duration_seconds"))]
        if _positive(e.get("cost_usd")):
            parts.append(f"${e['cost_usd']:.6f}")
        if e.get("output_hash"):
            parts.append(f"hash {e['output_hash']}")
        return " ".join(p for p in parts if p)
    if kind == "node_failure":
        return f"{node} {_duration(e.get('duration_seconds'))}: {_line(e.get('error'))}"
    if kind == "node_skipped":
        reason = e.get("reason")
        return node + (f": {_line(reason)}" if reason else "")
    if kind == "node_retry":
        delay = e.get("delay_seconds")
        wait = f" in {delay:g}s" if _positive(delay) else ""
        error = f": {_line(e.get('error'))}" if e.get("error") else ""
        return f"{node} attempt {e.get('attempt', '?')}{wait}{error}"
    if kind == "note":
        owner = f"[{node}] " if e.get("node_id") else ""
        fields = e.get("fields")
        extra = f" {_json(fields)}" if fields else ""
        return f"{owner}{_line(e.get('message'))}{extra}"
    if kind == "log":
        owner = f"[{node}] " if e.get("node_id") else ""
        said = f"{e.get('level', '?')} {e.get('logger', '?')}: {_line(e.get('message'))}"
        exception = str(e.get("exception") or "").rstrip()
        # a traceback's last line names the exception and its message
        raised = f" ({_line(exception.rpartition(chr(10))[2])})" if exception else ""
        return f"{owner}{said}{raised}"
    if kind == "usage":
        owner = f"[{node}] " if e.get("node_id") else ""
        parts = [f"{e.get('input_tokens', 0)} in", f"{e.get('output_tokens', 0)} out"]
        parts += [f"{n} {name}" for name, n in sorted((e.get("counters") or {}).items())]
        spent = f", ${e['cost_usd']:.6f}" if _positive(e.get("cost_usd")) else ""
        return f"{owner}{e.get('model', '?')}: {', '.join(parts)} tokens{spent}"
    if kind == "workflow_complete":
        cost = e.get("cumulative_cost_usd")
        return (
            f"{e.get('nodes_completed', '?')} succeeded, {e.get('nodes_failed', 0)} failed, "
            f"{e.get('nodes_skipped', 0)} skipped in {_duration(e.get('total_time_seconds'))}"
            + (f", ${cost:.4f}" if _positive(cost) else "")
        )
    if kind == "workflow_error":
        return _line(e.get("error"))
    if kind == "encode_error":
        owner = f"{node} " if e.get("node_id") else ""
        return f"{owner}({e.get('failed_event_type', '?')} not written): {_line(e.get('error'))}"
    rest = {k: v for k, v in e.items() if k not in COMMON_FIELDS}
    return _json(rest)


def _clock(event: Mapping[str, Any]) -> str:
    epoch = event.get("epoch_seconds")
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        try:
            moment = datetime.fromtimestamp(epoch)
        except (OverflowError, ValueError, OSError):  # in range, but not in local time
            pass
        else:
            return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return str(event.get("timestamp", "?"))


def _duration(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _line(value: Any) -> str:
    return one_line(str(value if value is not None else ""))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)
