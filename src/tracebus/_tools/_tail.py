"""Following a live run: one readable line per event until the run ends.

The trace is polled: new bytes are read, complete lines printed, a partial last line held
until its newline arrives. A trace that shrinks (the writer rolled back a failed write) is
read on from its new end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._text import printable
from ._find import find_trace
from ._reader import decode_line
from ._run import COMMON_FIELDS

_TERMINAL = ("workflow_complete", "workflow_error")
_WIDTH = len("workflow_complete")


@dataclass
class TailResult:
    """How the followed run ended: ``status`` is None when the wait timed out."""

    status: str | None = None
    error: str | None = None
    failed: set[str] = field(default_factory=set)
    events: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "complete" and not self.failed


def follow(
    path: str | os.PathLike[str],
    emit: Callable[[str], None],
    *,
    poll: float = 0.1,
    timeout: float | None = None,
) -> TailResult:
    """Print (through ``emit``) each event of the run at ``path`` as it is written, from the
    first, until workflow_complete or workflow_error, or until ``timeout`` seconds pass with
    nothing new. An output directory without a trace yet is waited for.

    Raises RunNotFoundError for a path that holds no run, TraceFormatError for a complete
    line that is not a JSON object, and OSError when the trace cannot be read.
    """
    result = TailResult()
    last_news = time.monotonic()
    trace = find_trace(path)
    while trace is None:
        if _expired(last_news, timeout):
            return result
        time.sleep(poll)
        trace = find_trace(path)
    with open(trace, "rb") as handle:
        pending = b""
        number = 0
        position = 0
        while True:
            chunk = handle.read()
            if not chunk:
                size = os.fstat(handle.fileno()).st_size
                if size < position:
                    handle.seek(size)
                    position, pending = size, b""
                    continue
                if _expired(last_news, timeout):
                    return result
                time.sleep(poll)
                continue
            last_news = time.monotonic()
            position += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            ended = False
            for raw in lines:
                number += 1
                if not raw.strip():
                    continue
                event = decode_line(number, raw, trace)
                ended = _record(result, event)
                emit(format_event(event))
            if ended:
                return result


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
    return " ".join(str(value if value is not None else "").split())


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _expired(since: float, timeout: float | None) -> bool:
    return timeout is not None and time.monotonic() - since >= timeout
