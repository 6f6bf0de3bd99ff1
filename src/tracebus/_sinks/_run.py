"""The run's own outputs: trace and log (each twice), console header and summary, progress,
metadata. One instance per run, fed only by that run's writer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import anyio
import anyio.lowlevel

from .._events import Event, WorkflowComplete, WorkflowError, WorkflowStart
from .._exceptions import SinkError
from .._layout import RunLayout
from .._state import IsoClock, RunState
from .._writer import STEP_EVENTS
from ._encoding import encode_log, encode_trace
from ._files import AppendFile, BatchAppender
from ._metadata import build_metadata, write_json_atomic
from ._progress import Progress

_RULE = "=" * 80
_LIFECYCLE = frozenset((WorkflowStart, WorkflowComplete, WorkflowError))


class RunFiles:
    """Writes one run's trace, log and metadata files; prints its header and summary."""

    name = "run files"

    def __init__(
        self,
        layout: RunLayout,
        state: RunState,
        *,
        pid: int,
        started: datetime,
        progress: bool = True,
        console: TextIO | None = None,
        dropped: Callable[[], int] = lambda: 0,
        events_before: int = 0,
    ) -> None:
        self.layout = layout
        self.metadata: dict[str, Any] | None = None
        self._state = state
        self._pid = pid
        self._started = started
        self._want_progress = progress
        self._progress: Progress | None = None
        self._console = console
        self._dropped = dropped
        self._events_before = events_before  # already in the trace of a resumed run
        self._iso = IsoClock()
        self._traces = (AppendFile(layout.trace_file), AppendFile(layout.audit_trace_file))
        self._logs = (AppendFile(layout.log_file), AppendFile(layout.audit_log_file))
        self._appender = BatchAppender()
        state.trace_file = str(layout.trace_file)
        state.log_file = str(layout.log_file)

    async def aopen(self) -> None:
        for handle in (*self._traces, *self._logs):
            await handle.open()

    async def write_batch(self, events: Sequence[Event]) -> None:
        # A big batch is encoded a step at a time, letting the loop run between steps; the
        # steps' chunks go to each file in one vectored write.
        traces: list[bytes] = []
        logs: list[bytes] = []
        shown: list[str] = []
        count = len(events)
        for start in range(0, count, STEP_EVENTS):
            if start:
                await anyio.lowlevel.checkpoint()
            step = events[start : start + STEP_EVENTS] if count > STEP_EVENTS else events
            traces.append(encode_trace(step))
            if _LIFECYCLE.isdisjoint(map(type, step)):
                logs.append(encode_log(step).encode())
            else:
                logs.append(self._log_with_blocks(step, shown).encode())
        if self._progress is not None and (line := self._progress.update()):
            logs.append(self._progress_line(line).encode())
        await self._appender.append(
            [(handle, traces, count) for handle in self._traces]
            + [(handle, logs, count) for handle in self._logs]
        )
        if shown and self._console is not None:
            self._console.write("".join(shown))
            self._console.flush()

    def _log_with_blocks(self, events: Sequence[Event], shown: list[str]) -> str:
        """The log lines with the header after ``workflow_start`` and the summary after the
        run's end; opens and closes the progress bar; adds the blocks to ``shown``."""
        parts: list[str] = []
        start = 0
        for index, event in enumerate(events):
            kind = type(event)
            if kind not in _LIFECYCLE:
                continue
            parts.append(encode_log(events[start : index + 1]))
            start = index + 1
            if kind is WorkflowStart:
                shown.append(self._header())
                parts.append(shown[-1])
                if self._want_progress:
                    self._progress = Progress(self._state)
            else:
                self._close_progress(parts)
                shown.append(self._summary(event))
                parts.append(shown[-1])
        parts.append(encode_log(events[start:]))
        return "".join(parts)

    async def aclose(self) -> None:
        """Final progress line, fsync and close the files, then write the metadata.

        Raises SinkError naming each file that failed and how many events it lost.
        """
        tail: list[str] = []
        self._close_progress(tail)
        if tail:
            for handle in self._logs:
                await handle.write("".join(tail).encode(), 0)
        files = (*self._traces, *self._logs)
        # The four fsyncs wait on the disk, not on each other (AppendFile.aclose never raises).
        async with anyio.create_task_group() as group:
            for handle in files:
                group.start_soon(handle.aclose)
        failures = {str(f.path): (f.lost, f.error) for f in files if f.error is not None}
        try:
            await self.write_metadata()
        except OSError as exc:
            failures[str(self.layout.metadata_file)] = (0, exc)
        if failures:
            raise SinkError(failures)

    async def write_metadata(self) -> None:
        """Write the metadata as it stands now, atomically. Raises OSError."""
        main_trace = self._traces[0]
        self.metadata = build_metadata(
            self.layout,
            self._state,
            pid=self._pid,
            started=self._started,
            events_written=self._events_before + main_trace.written,
            events_dropped=self._dropped(),
            events_lost=main_trace.lost,
            write_errors={
                str(f.path): {
                    "events_lost": f.lost,
                    "error": f"{type(f.error).__name__}: {f.error}",
                }
                for f in (*self._traces, *self._logs)
                if f.error is not None
            },
        )
        await anyio.to_thread.run_sync(write_json_atomic, self.layout.metadata_file, self.metadata)

    def _close_progress(self, lines: list[str]) -> None:
        if self._progress is not None:
            lines.append(self._progress_line(self._progress.close()))
            self._progress = None

    def _progress_line(self, text: str) -> str:
        return f"[{self._iso(time.time())}] PROGRESS {text}\n"

    def _header(self) -> str:
        layout = self.layout
        return _block(
            f"[RUN] Executing: {layout.workflow_id}",
            f"[DIR] Output: {layout.output_dir.absolute()}",
            f" Run: {layout.run_id}",
            f" PID: {self._pid}",
            f" Started: {self._started.strftime('%Y-%m-%d %H:%M:%S')}",
        )

    def _summary(self, event: Event) -> str:
        state, layout = self._state, self.layout
        elapsed = state.elapsed()
        if isinstance(event, WorkflowError):
            return _block(
                f" Workflow failed: {layout.workflow_id}",
                f" Error: {event.error}",
                f" Nodes executed: {state.nodes_completed}/{state.total_nodes}",
                f" Time: {elapsed:.2f}s",
                f" Trace: {layout.trace_file}",
                f" Log: {layout.log_file}",
            )
        lines = [
            f" Workflow completed: {layout.workflow_id}",
            f" Nodes executed: {state.nodes_completed}/{state.total_nodes}",
        ]
        if state.nodes_failed:
            lines.append(f" Nodes failed: {state.nodes_failed}")
        if state.nodes_skipped:
            lines.append(f" Nodes skipped: {state.nodes_skipped}")
        lines.append(f" Total time: {elapsed:.2f}s ({elapsed / 60:.2f}m)")
        cost = state.cumulative_cost_usd
        if cost > 0:
            lines.append(f" Cost: ${cost:.4f}")
        dropped = self._dropped()
        if dropped:
            lines.append(f" Events dropped: {dropped}")
        lines += [f" Trace file: {layout.trace_file}", f" Log file: {layout.log_file}"]
        return _block(*lines)


def _block(*lines: str) -> str:
    return "\n".join(("", _RULE, *lines, _RULE, "")) + "\n"
