"""The run's own outputs: trace and log (each twice), console header and summary, progress,
metadata. One instance per run, fed only by that run's writer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._events import Event, WorkflowComplete, WorkflowError, WorkflowStart
from .._exceptions import SinkError, describe
from .._layout import RunLayout
from .._loop import run_blocking
from .._state import IsoClock, RunState
from .._text import printable, utf8_text
from ._encoding import encode_log, encode_trace
from ._files import AppendFile, BatchAppender
from ._metadata import build_metadata, write_json_atomic
from ._progress import Progress, ProgressOption

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
        progress: ProgressOption = True,
        console: TextIO | None = None,
        dropped: Callable[[], int] = lambda: 0,
        sink_failures: Callable[[], dict[str, tuple[int, BaseException]]] = dict,
        events_before: int = 0,
        on_trace_failure: Callable[[OSError], None] | None = None,
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
        self._sink_failures = sink_failures
        self._events_before = events_before  # already in the trace of a resumed run
        self._iso = IsoClock()
        # an audit copy that is a link of its file is written with it, not a second time
        self._traces = _files_of(
            layout.trace_file, layout.audit_trace_file, layout.audit_trace_linked
        )
        self._logs = _files_of(layout.log_file, layout.audit_log_file, layout.audit_log_linked)
        self._appender = BatchAppender()
        # what prepare() made and write_batch() writes next
        self._trace_chunks: list[bytes] = []
        self._log_chunks: list[bytes] = []
        self._shown: list[str] = []
        self._prepared = 0
        self._console_error: BaseException | None = None
        self._closed = False
        # Where the writer is in the bus's queue: events taken, and of those, how many are
        # settled (their lines are in the main trace, or were left out as already there).
        self._taken = 0
        self.settled = 0
        #: With ``on_trace_failure``: the first failed append to the main trace. From then on
        #: nothing is written (the collector's producers send it all again, to a writer that
        #: takes the run back from its trace), and every event taken is counted lost.
        self.trace_failure: OSError | None = None
        #: Events not written because of it; ``refused`` of them were taken after it (the
        #: writer counts those as left out).
        self.unwritten = 0
        self.refused = 0
        self._on_trace_failure = on_trace_failure
        state.trace_file = utf8_text(str(layout.trace_file))
        state.log_file = utf8_text(str(layout.log_file))

    @property
    def trace_written(self) -> int:
        """Events this writer has put in the main trace."""
        return self._traces[0].written

    async def aopen(self) -> None:
        """Open the files (two where the audit copies are links). Raises OSError naming the
        first that cannot be opened (a descriptor limit, a symbolic link in its place...): a
        run that cannot write its files fails at entry, not at close."""
        opened = []
        try:
            for handle in (*self._traces, *self._logs):
                await handle.open()
                opened.append(handle)
        except OSError:
            with anyio.CancelScope(shield=True):
                for handle in opened:
                    await handle.aclose()
            self._closed = True
            raise

    def prepare(self, events: list[Event]) -> list[Event]:
        """Stamp one step of a batch (see ``RunState.apply``) and make its trace and log lines
        at once, while the events are still in the CPU cache; ``write_batch`` writes them.

        The writer calls it on each step of a batch before handing the batch (the events kept
        here) to the sinks. Returns the events kept.
        """
        self._taken += len(events)
        if self.trace_failure is not None:
            self._traces[0].lost += len(events)
            self.unwritten += len(events)
            self.refused += len(events)
            return []
        kept = self._state.apply(events)
        if not kept and not self._trace_chunks:
            self.settled = self._taken  # all resends of what the trace holds
        if kept:
            trace = encode_trace(kept)  # may put encode_error records in place of events
            if _LIFECYCLE.isdisjoint(map(type, kept)):
                log = encode_log(kept).encode()
            else:
                log = self._log_with_blocks(kept, self._shown).encode()
            self._trace_chunks.append(trace)
            self._log_chunks.append(log)
            self._prepared += len(kept)
        return kept

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write the lines ``prepare`` made for ``events``: one vectored write per file."""
        traces, logs, shown = self._trace_chunks, self._log_chunks, self._shown
        count, self._prepared = self._prepared, 0
        self._trace_chunks, self._log_chunks, self._shown = [], [], []
        if count != len(events):
            raise RuntimeError(f"{len(events)} events to write, {count} prepared")
        if self._progress is not None and (line := self._console_safe(self._progress.update)):
            logs.append(self._progress_line(line).encode())
        files = (*self._traces, *self._logs)
        main = self._traces[0]
        before = [(handle.size, handle.failures) for handle in files]
        await self._appender.append(
            [(handle, traces, count) for handle in self._traces]
            + [(handle, logs, count) for handle in self._logs]
        )
        if main.failures == before[0][1]:
            self.settled = self._taken
        elif self._on_trace_failure is not None:
            await self._stop_writing(count, before)
            return
        if shown:
            self._show("".join(shown))

    def _console_safe(self, draw: Callable[[], str | None]) -> str | None:
        """Move the progress bar; a terminal that fails stops the bar, not the run."""
        try:
            return draw()
        except Exception as exc:  # stderr closed, an encoding that cannot show the bar
            self._progress, self._console_error = None, self._console_error or exc
            return None

    def _show(self, text: str) -> None:
        """Print on the console; a console that fails is reported at close, not retried."""
        if self._console is None:
            return
        try:
            self._console.write(text)
            self._console.flush()
        except Exception as exc:  # a closed stream, an encoding that cannot show the text
            self._console, self._console_error = None, self._console_error or exc

    async def _stop_writing(self, count: int, before: list[tuple[int, int]]) -> None:
        """The main trace refused a batch: take it back from the other files too, so that
        every file holds the same events, and write nothing more."""
        files = (*self._traces, *self._logs)
        for handle, (size, failures) in zip(files[1:], before[1:], strict=True):
            if handle.failures == failures:
                await handle.take_back(size, count)
        self.unwritten += count
        error = self._traces[0].error
        self.trace_failure = error if isinstance(error, OSError) else OSError(str(error))
        assert self._on_trace_failure is not None
        self._on_trace_failure(self.trace_failure)

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
                    self._console_safe(self._start_progress)
            else:
                self._close_progress(parts)
                shown.append(self._summary(event))
                parts.append(shown[-1])
        parts.append(encode_log(events[start:]))
        return "".join(parts)

    async def aclose(self) -> None:
        """Final progress line, fsync and close the files, write the metadata.

        Raises SinkError naming each file that failed and how many events it lost.
        """
        if self._closed:  # never opened: nothing to close, no run to describe
            return
        tail: list[str] = []
        self._close_progress(tail)
        if tail:
            for handle in self._logs:
                await handle.write("".join(tail).encode(), 0)
        files = (*self._traces, *self._logs)
        errors = [f.error for f in files]
        metadata_error: list[OSError] = []
        # The four fsyncs and the metadata's write wait on the disk, not on each other
        # (AppendFile.aclose never raises); should an fsync fail, the metadata is written again
        # to say so.
        async with anyio.create_task_group() as group:
            for handle in files:
                group.start_soon(handle.aclose)
            group.start_soon(self._write_metadata_into, metadata_error)
        if [f.error for f in files] != errors:
            metadata_error.clear()
            await self._write_metadata_into(metadata_error)
        failures = {
            name: failure
            for name, failure in self._failures().items()
            if name not in self._sink_failures()
        }
        if metadata_error:
            failures[str(self.layout.metadata_file)] = (0, metadata_error[0])
        if failures:
            raise SinkError(failures)

    async def flush(self) -> None:
        """Write the metadata as it stands. Raises SinkError, as closing does, when it cannot
        be written or a file failed so far."""
        failures: dict[str, tuple[int, BaseException]] = {}
        try:
            await self.write_metadata()
        except OSError as exc:
            failures[str(self.layout.metadata_file)] = (0, exc)
        own = {
            str(name): (f.lost, f.error)
            for f in (*self._traces, *self._logs)
            if f.error is not None
            for name in f.names
        }
        failures.update(own)
        if failures:
            raise SinkError(failures)

    async def _write_metadata_into(self, errors: list[OSError]) -> None:
        try:
            await self.write_metadata()
        except OSError as exc:
            errors.append(exc)

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
                utf8_text(name): {
                    "events_lost": lost,
                    "error": utf8_text(describe(error)),
                }
                for name, (lost, error) in self._failures().items()
            },
        )
        await run_blocking(write_json_atomic, self.layout.metadata_file, self.metadata)

    def _failures(self) -> dict[str, tuple[int, BaseException]]:
        """Every failure so far: the run's files, the console, the user's sinks."""
        failures = {
            str(name): (f.lost, f.error)
            for f in (*self._traces, *self._logs)
            if f.error is not None
            for name in f.names
        }
        if self._console_error is not None:
            failures["console"] = (0, self._console_error)
        failures.update(self._sink_failures())
        return failures

    def _start_progress(self) -> None:
        succeeded_only = self._want_progress == "succeeded"
        self._progress = Progress(self._state, succeeded_only=succeeded_only)

    def _close_progress(self, lines: list[str]) -> None:
        if self._progress is not None:
            last = self._console_safe(self._progress.close)
            if last is not None:
                lines.append(self._progress_line(last))
            self._progress = None

    def _progress_line(self, text: str) -> str:
        return f"[{self._iso(time.time())}] PROGRESS {printable(text)}\n"

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
                *_count_lines(state),
                f" Time: {elapsed:.2f}s",
                f" Trace: {_summary_path(layout.trace_file, layout)}",
                f" Log: {_summary_path(layout.log_file, layout)}",
            )
        lines = [f" Workflow completed: {layout.workflow_id}", *_count_lines(state)]
        lines.append(f" Total time: {elapsed:.2f}s ({elapsed / 60:.2f}m)")
        cost = state.cumulative_cost_usd
        if cost is not None and cost > 0:
            lines.append(f" Cost: ${cost:.4f}")
        dropped = self._dropped()
        if dropped:
            lines.append(f" Events dropped: {dropped}")
        lines += [
            f" Trace file: {_summary_path(layout.trace_file, layout)}",
            f" Log file: {_summary_path(layout.log_file, layout)}",
        ]
        return _block(*lines)


def _files_of(path: Path, audit: Path, linked: bool) -> tuple[AppendFile, ...]:
    if linked:
        return (AppendFile(path, aliases=(audit,)),)
    return (AppendFile(path), AppendFile(audit))


def _summary_path(path: Path, layout: RunLayout) -> Path:
    """``path`` as the summary shows it: relative to the output directory's parent, as the seed
    printed it (the header gives the output directory in full)."""
    return path.relative_to(layout.output_dir.parent)


def _count_lines(state: RunState) -> list[str]:
    """``Nodes executed: completed/total`` (the classic line), the other node counts that are
    not zero, and the attempt counts when a node was retried; named as in the metadata (see
    ``NodeCounts``)."""
    counts = state.counts()
    shown = [
        ("Nodes failed", counts.nodes_failed),
        ("Nodes skipped", counts.nodes_skipped),
        ("Nodes unfinished", counts.nodes_unfinished),
    ]
    if counts.nodes_retried:
        shown += [
            ("Nodes retried", counts.nodes_retried),
            ("Retries", counts.retries),
            ("Attempts failed", counts.attempts_failed),
        ]
    lines = [f" Nodes executed: {counts.nodes_completed}/{state.total_nodes}"]
    lines += [f" {label}: {value}" for label, value in shown if value]
    return lines


def _block(*lines: str) -> str:
    return "\n".join(("", _RULE, *map(printable, lines), _RULE, "")) + "\n"
