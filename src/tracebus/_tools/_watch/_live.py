"""A run's page, fed from its trace as the trace grows: each ``poll`` returns what changed.

The trace is read as ``tracebus tail`` reads it (``AppendedLines``) and its lines are fed to
the readers' one-pass scan, whose counts are the ones ``summary`` reports. Every attempt is
given a lane when it starts (the lowest one free), so a running attempt is drawn where it
will stay when it ends. An update holds the attempts that ended since the last one, every
attempt still running, the run's figures, and the readable lines (``tail``'s) of the logs,
failures and notes that came meanwhile.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from ..._exceptions import TraceFormatError
from .._attempts import STATUS_CODES
from .._lines import TraceLine, decode_typed
from .._reader import decode_line
from .._scan import RunFacts, RunScan
from .._tail import AppendedLines, format_event
from .._usage import UsageTally

#: Bytes read from the trace at a time: a long trace is read in several steps of one poll.
READ_BYTES = 1 << 22
#: Readable lines kept between two updates: more arrive as "N more lines" (the trace has all).
MAX_LINES = 200
#: The events whose line the page shows as it comes.
_SHOWN = frozenset(
    {
        "workflow_start",
        "workflow_complete",
        "workflow_error",
        "node_failure",
        "node_retry",
        "note",
        "log",
        "encode_error",
    }
)
_CODE = {status: code for code, status in enumerate(STATUS_CODES)}


class LiveRun:
    """One run of a trace as far as it has been read (a ``NodeSink`` of the scan): lanes,
    the attempts not yet sent, tokens and cost, the lines not yet sent."""

    def __init__(self) -> None:
        self.origin: float | None = None
        self.running: dict[str, deque[tuple[int, float]]] = {}
        self._free: list[int] = []
        self.lanes = 0
        self.ended: dict[str, list[Any]] = {name: [] for name in _ENDED}
        self.cost_usd = 0.0
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.lines_missed = 0

    def since_origin(self, epoch: float) -> float:
        if self.origin is None:
            self.origin = epoch
        return round(epoch - self.origin, 6)

    def _lane(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self.lanes += 1
        return self.lanes - 1

    def started(self, node_id: str, epoch: float) -> None:
        self.running.setdefault(node_id, deque()).append((self._lane(), epoch))

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        waiting = self.running.get(node_id)
        if waiting:
            lane = waiting.popleft()[0]
            if not waiting:
                del self.running[node_id]
        else:  # an end without a start of its own
            lane = self._lane()
        heapq.heappush(self._free, lane)
        ended = self.ended
        ended["node"].append(node_id)
        ended["lane"].append(lane)
        ended["start"].append(self.since_origin(start))
        ended["end"].append(self.since_origin(end if end is not None else start))
        ended["status"].append(_CODE[status])
        ended["error"].append(line.error if line is not None and status == "failed" else None)
        cost = line.cost_usd if line is not None else None
        ended["cost"].append(cost or None)
        if cost:
            self.cost_usd += cost

    def retry(self, slot: int, line: TraceLine) -> None:
        pass

    def note(self, line: TraceLine) -> None:
        pass

    def usage(self, slot: int | None, line: TraceLine, during: bool) -> None:
        pass  # the scan totals it

    def close(self, facts: RunFacts) -> None:
        pass

    def said(self, text: str) -> None:
        if len(self.lines) == self.lines.maxlen:
            self.lines_missed += 1
        self.lines.append(text)

    def take_ended(self) -> dict[str, list[Any]]:
        ended, self.ended = self.ended, {name: [] for name in _ENDED}
        return ended

    def take_lines(self) -> tuple[list[str], int]:
        lines, missed = list(self.lines), self.lines_missed
        self.lines.clear()
        self.lines_missed = 0
        return lines, missed


_ENDED = ("node", "lane", "start", "end", "status", "error", "cost")


class RunFeed:
    """The page of the run whose trace is at ``trace``, read on at each ``poll``.

    A trace replaced by another file (a new inode) is read again from its start, and so is a
    trace that holds a later ``workflow_start``: the update says ``reset``.
    """

    def __init__(self, trace: Path) -> None:
        self.trace = trace
        self._handle: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._appended: AppendedLines | None = None
        self._reset = True
        self._last: float | None = None
        self._problems: list[str] = []
        self._begin()

    def _begin(self) -> None:
        self.scan: RunScan[LiveRun] = RunScan(LiveRun)
        self._reset = True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def poll(self) -> dict[str, Any] | None:
        """Read what was appended since the last poll: the page's update, or None when
        nothing changed. Lines that break the format are skipped, and said so."""
        self._reopen_if_replaced()
        if self._appended is None:
            return None
        news = False
        while (lines := self._appended.read(READ_BYTES)) is not None:
            for number, raw in lines:
                self._add(number, raw)
            news = news or bool(lines)
        if not news and not self._reset:
            return None
        return self._update()

    def _reopen_if_replaced(self) -> None:
        try:
            info = os.stat(self.trace)
        except OSError:
            return  # gone for now: what was read stays shown
        identity = (info.st_dev, info.st_ino)
        if identity == self._identity:
            return
        self.close()
        try:
            self._handle = open(self.trace, "rb")  # kept open between polls
        except OSError:
            return
        self._identity = identity
        self._appended = AppendedLines(self._handle)
        self._begin()

    def _add(self, number: int, raw: bytes) -> None:
        try:
            line = decode_typed(raw, number, self.trace)
            kind = line.event_type
            event = decode_line(number, raw, self.trace) if kind in _SHOWN else None
        except TraceFormatError as exc:
            self._problems.append(str(exc))
            return
        epoch = line.epoch_seconds
        if epoch is not None:
            self._last = epoch
        if kind == "workflow_start" and self.scan.runs:
            self._reset = True  # the scan begins the run again, with a new LiveRun
        elif kind == "node_start" and line.node_id is not None:
            self.scan.sink.started(line.node_id, epoch if epoch is not None else self._last or 0.0)
        self.scan.add(line)
        run = self.scan.sink
        if epoch is not None:
            run.since_origin(epoch)
        if event is not None:
            run.said(format_event(event))

    def _update(self) -> dict[str, Any]:
        scan, run = self.scan, self.scan.sink
        start, end = scan.start, scan.end
        status = "running"
        if end is not None:
            status = "error" if scan.error is not None else "complete"
        usage = scan.usage
        cost: float | None = run.cost_usd + usage.cost_usd
        if end is not None and end.event_type == "workflow_complete":
            if end.cumulative_cost_usd is not None:
                cost = end.cumulative_cost_usd
        running: dict[str, list[Any]] = {"node": [], "lane": [], "start": []}
        for node_id, attempts in run.running.items():
            for lane, epoch in attempts:
                running["node"].append(node_id)
                running["lane"].append(lane)
                running["start"].append(run.since_origin(epoch))
        lines, missed = run.take_lines()
        origin = run.origin
        now = self._last
        update = {
            "reset": self._reset,
            "run": {
                "workflow_id": (start.workflow_id if start else None) or "",
                "run_id": start.run_id if start and isinstance(start.run_id, str) else None,
                "status": status,
                "error": scan.error,
                "total_nodes": max(start.total_nodes or 0 if start else 0, len(scan.slots)),
                "counts": scan.tally.counts()._asdict(),
                "cost_usd": cost,
                "input_tokens": _tokens(usage, "input_tokens"),
                "output_tokens": _tokens(usage, "output_tokens"),
                "events": scan.events,
                "started": origin,
                "elapsed": run.since_origin(now) if now is not None else 0.0,
                "lanes": run.lanes,
            },
            "ended": run.take_ended(),
            "running": running,
            "lines": lines,
            "lines_missed": missed,
            "problems": self._problems,
            "statuses": STATUS_CODES,
        }
        self._reset = False
        self._problems = []
        return update


def _tokens(usage: UsageTally, kind: str) -> int:
    return int(sum(totals[kind] for totals in usage.by_model.values()))


def encode(update: Any) -> bytes:
    """An update as one line of JSON, for a Server-Sent Event's ``data:`` field."""
    return msgspec.json.encode(update)
