"""A run's page, fed from its trace as the trace grows: each ``poll`` returns what changed.

The new lines are read as ``tracebus tail`` reads them (``AppendedLines``): they tell that the
run moved on, and give the readable lines (``tail``'s) of its logs, failures and notes. The
run's figures and its timeline come from the readers' one pass (``read_attempts``), made
again when the trace grew; the timeline goes to the page as the renderer's data object
(``TimelineFeed``): the whole run first, then only the attempts that are new or changed
state (a running attempt that ended) since. The pass over a long trace costs time, so the
page's stream waits ``pause`` seconds between two polls, longer as the trace grows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from ..._catalog import lockable
from ..._exceptions import TraceFormatError
from ..._lock import run_is_locked
from .._attempts import STATUS_CODES, AttemptTable, read_attempts
from .._lines import decode_typed
from .._reader import decode_line
from .._scan import RunFacts
from .._tail import AppendedLines
from .._tail_text import format_event
from .._timeline import TimelineFeed

#: Bytes of new lines read at a time.
READ_BYTES = 1 << 22
#: Readable lines sent in one update: more arrive as "N more lines" (the trace has them all).
MAX_LINES = 200
#: The shortest wait between two polls, and how many times the last pass's time it is at least.
PUSH = 0.25
PAUSE_FACTOR = 4.0
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
_FAILED = STATUS_CODES.index("failed")
_RUNNING = STATUS_CODES.index("running")


class RunFeed:
    """The page of the run whose trace is at ``trace``, read on at each ``poll``.

    The first update, and the first after the trace was replaced by another file or began
    another run, says ``reset``: it holds the whole run.
    """

    def __init__(self, trace: Path) -> None:
        self.trace = trace
        #: seconds to wait before the next poll
        self.pause = PUSH
        self._handle: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._appended: AppendedLines | None = None
        self._run: tuple[Any, ...] | None = None
        self._timeline = TimelineFeed()
        self._sent: dict[tuple[int, int], int] = {}
        self._reset = True
        self._lines: list[str] = []
        self._missed = 0
        self._problems: list[str] = []
        #: the ids of the run shown as running, whose writer holds its lock
        self._writing: tuple[str, str] | None = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def poll(self) -> dict[str, Any] | None:
        """Read what was appended since the last poll: the page's update, or None when
        nothing changed."""
        news = self._read_lines()
        if not news and not self._reset and not self._writer_gone():
            return None
        began = time.perf_counter()
        try:
            facts, table = read_attempts(self.trace)
        except (TraceFormatError, OSError) as exc:
            self._problems.append(str(exc))
            return self._take(None)
        finally:
            self.pause = max(PUSH, PAUSE_FACTOR * (time.perf_counter() - began))
        run = (self._identity, facts.skipped_runs)
        if run != self._run:
            self._run, self._reset = run, True
        return self._take(self._update(facts, table))

    def _read_lines(self) -> bool:
        """Read the lines appended since the last poll; whether there were any (or the
        trace was replaced: then it is read again from its start)."""
        try:
            info = os.stat(self.trace)
        except OSError:
            return False  # gone for now: what was read stays shown
        if (info.st_dev, info.st_ino) != self._identity:
            self.close()
            try:
                self._handle = open(self.trace, "rb")  # kept open between polls
            except OSError:
                return False
            self._identity = (info.st_dev, info.st_ino)
            self._appended = AppendedLines(self._handle)
            self._reset = True
        assert self._appended is not None
        news = False
        while (lines := self._appended.read(READ_BYTES)) is not None:
            news = news or bool(lines)
            for number, raw in lines:
                self._said(number, raw)
        return news

    def _said(self, number: int, raw: bytes) -> None:
        try:
            kind = decode_typed(raw, number, self.trace).event_type
            if kind in _SHOWN:
                line = format_event(decode_line(number, raw, self.trace))
                if len(self._lines) < MAX_LINES:
                    self._lines.append(line)
                else:
                    self._missed += 1
        except TraceFormatError as exc:
            self._problems.append(str(exc))

    def _update(self, facts: RunFacts, table: AttemptTable) -> dict[str, Any]:
        if self._reset:
            self._timeline = TimelineFeed()
            self._sent = {}
        rows = []
        for row, (slot, number, status) in enumerate(
            zip(table.slot, table.number, table.status, strict=True)
        ):
            if self._sent.get((slot, number)) != status:
                self._sent[slot, number] = status
                rows.append(row)
        timeline = self._timeline.data(facts, table, None if self._reset else rows)
        cost = facts.reported_cost_usd
        if cost is None:
            cost = sum(table.cost, 0.0) + facts.usage_cost_usd
        tokens = facts.usage_by_model.values()
        return {
            "run": {
                "workflow_id": facts.workflow_id,
                "run_id": facts.run_id,
                "status": self._status(facts),
                "error": facts.error,
                "total_nodes": facts.total_nodes,
                "counts": facts.counts._asdict(),
                "running": sum(1 for status in table.status if status == _RUNNING),
                "cost_usd": cost,
                "input_tokens": int(sum(t.get("input_tokens", 0) for t in tokens)),
                "output_tokens": int(sum(t.get("output_tokens", 0) for t in tokens)),
                "events": facts.events,
                "started": facts.started,
                "elapsed": facts.wall_seconds,
            },
            "timeline": timeline,
            "failures": [
                [facts.node_ids[table.slot[row]], table.errors.get(row)]
                for row in rows
                if table.status[row] == _FAILED
            ],
        }

    def _status(self, facts: RunFacts) -> str:
        """The run's status as ``tracebus runs`` says it: a run with no end is ``running``
        while its writer holds the run's lock, else ``incomplete``."""
        self._writing = None
        if facts.status != "incomplete" or not lockable(facts.workflow_id, facts.run_id):
            return facts.status
        assert facts.run_id is not None
        self._writing = (facts.workflow_id, facts.run_id)
        if self._locked():
            return "running"
        self._writing = None
        return "incomplete"

    def _locked(self) -> bool:
        if self._writing is None:
            return False
        try:
            return run_is_locked(_output_dir(self.trace), *self._writing)
        except OSError:
            return False

    def _writer_gone(self) -> bool:
        """Whether the run shown as running lost its writer (killed) since the last poll."""
        if self._writing is None or self._locked():
            return False
        self._writing = None
        return True

    def _take(self, update: dict[str, Any] | None) -> dict[str, Any]:
        """The update with the lines and problems gathered since the last one."""
        taken = {
            **(update or {}),
            "reset": self._reset and update is not None,
            "lines": self._lines,
            "lines_missed": self._missed,
            "problems": self._problems,
        }
        if update is not None:
            self._reset = False
        self._lines, self._missed, self._problems = [], 0, []
        return taken


def _output_dir(trace: Path) -> Path:
    """The output directory of a trace in ``traces/`` or ``audit/step_NN/``."""
    return trace.parent.parent if trace.parent.name == "traces" else trace.parent.parent.parent


def encode(update: Any) -> bytes:
    """An update as one line of JSON, for a Server-Sent Event's ``data:`` field."""
    return msgspec.json.encode(update)
