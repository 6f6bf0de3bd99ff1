"""The run's own outputs, as one sink of its writer: the trace and log lines (each file twice:
the run's and the audit copy), written in one trip to a worker thread per batch for all
files, with the console (``_console``), the progress bar (``_progress``) and the metadata
(``_metadata``) they drive. One instance per run, fed only by that run's writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import msgspec

from .._events import Event, WorkflowComplete, WorkflowError, WorkflowStart
from .._exceptions import SinkError
from .._layout import RunLayout
from .._state import RunState
from .._text import utf8_text
from ._console import Console, header, summary
from ._encoding import (
    encode_in_parts,
    encode_log,
    encode_log_line,
    encode_trace,
    node_times_encoded,
)
from ._files import AppendFile, BatchAppender
from ._metadata import MetadataFile
from ._progress import ProgressLines, ProgressOption

_LIFECYCLE = frozenset((WorkflowStart, WorkflowComplete, WorkflowError))
_DONE = object()


class RunFiles:
    """Writes one run's trace, log and metadata files; prints its header and summary.

    ``prepare`` (called by the writer on each stamped step) counts the events and makes their
    lines; ``write_batch`` writes them, preparing the batch itself when nothing did.
    ``taken`` tells where the writer is in its queue (events taken so far, resends left out
    included), for ``settled``.
    """

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
        sink_reports: Callable[[], dict[str, Any]] = dict,
        events_before: int = 0,
        on_trace_failure: Callable[[OSError], None] | None = None,
        taken: Callable[[], int] | None = None,
    ) -> None:
        self.layout = layout
        self._state = state
        self._pid = pid
        self._started = started
        self._console = Console(console)
        self._progress = ProgressLines(state, progress, self._console.failed)
        self._dropped = dropped
        self._sink_failures = sink_failures
        self._metadata = MetadataFile(
            layout,
            state,
            pid=pid,
            started=started,
            events_before=events_before,
            dropped=dropped,
            sink_reports=sink_reports,
        )
        self._writer_taken = taken
        # an audit copy that is a link of its file is written with it, not a second time
        self._traces = _files_of(
            layout.trace_file, layout.audit_trace_file, layout.audit_trace_linked
        )
        self._logs = _files_of(layout.log_file, layout.audit_log_file, layout.audit_log_linked)
        audit_trace = self._traces[-1]  # the link, or the copy of its own
        self._metadata.audit_identity = lambda: audit_trace.identity
        self._appender = BatchAppender()
        # what prepare() made and write_batch() writes next
        self._trace_chunks: list[bytes] = []
        self._log_chunks: list[bytes] = []
        self._shown: list[str] = []
        self._prepared = 0
        #: What prepare left of its step for prepare_more (see _lifecycle_lines).
        self._rest: Iterator[None] | None = None
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
    def metadata(self) -> dict[str, Any] | None:
        """The metadata as last written."""
        return self._metadata.metadata

    @property
    def metadata_file(self) -> Path:
        """Where the metadata is: the step's, or under ``previous/`` beside the run's audit
        copies once a later run of the step moved them (see ``MetadataFile``)."""
        return self._metadata.path

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
        """Count one stamped step of a batch (see ``RunState.count``) and make its trace and
        log lines at once, while the events are still in the CPU cache; ``write_batch`` writes
        them (a step with the run's start or end: once ``prepare_more`` says it is done).
        Returns the events to write: none once the trace refused a write.
        """
        self._prepare_rest()  # what a step before left, if nobody asked for the rest
        taken = self._writer_taken
        self._taken = taken() if taken is not None else self._taken + len(events)
        if self.trace_failure is not None:
            self._traces[0].lost += len(events)
            self.unwritten += len(events)
            self.refused += len(events)
            return []
        kept = self._state.count(events)
        if not kept and not self._trace_chunks:
            self.settled = self._taken  # all resends of what the trace holds
        if kept and _LIFECYCLE.isdisjoint(map(type, kept)):
            # encode_trace may put encode_error records in place of events
            self._add_lines(kept, encode_trace(kept), encode_log(kept).encode())
        elif kept:
            self._rest = self._lifecycle_lines(kept)
        return kept

    def prepare_more(self) -> bool:
        """Prepare the next part of what ``prepare`` left of its step (the run's end, whose
        every node's time is encoded a part at a time); False once nothing is left."""
        rest = self._rest
        if rest is None:
            return False
        try:
            if next(rest, _DONE) is None:
                return True
        except BaseException:
            self._rest = None
            raise
        self._rest = None
        return False

    def _prepare_rest(self) -> None:
        """All of what ``prepare`` left of its step, at once."""
        while self.prepare_more():
            pass

    def _lifecycle_lines(self, kept: list[Event]) -> Iterator[None]:
        """The lines of a step with a run's start or end, made once the node times of its end
        are encoded, a part at a time."""
        encoded: dict[int, msgspec.Raw] = {}
        for index, event in enumerate(kept):
            if type(event) is WorkflowComplete and event.node_times:
                encoded[index] = yield from encode_in_parts(event.node_times)
        with node_times_encoded(kept, encoded):
            trace = encode_trace(kept)
            log = self._log_with_blocks(kept, self._shown)
        self._add_lines(kept, trace, log)

    def _add_lines(self, kept: list[Event], trace: bytes, log: bytes) -> None:
        self._trace_chunks.append(trace)
        self._log_chunks.append(log)
        self._prepared += len(kept)

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write the lines ``prepare`` made for ``events`` (made now if nothing prepared them:
        a RunFiles fed as a plain sink): one vectored write per file."""
        self._prepare_rest()  # of a step prepared by a caller that did not ask for it
        if not self._prepared and events:
            events = self.prepare(list(events))
            self._prepare_rest()
            if not events:
                return
        traces, logs, shown = self._trace_chunks, self._log_chunks, self._shown
        count, self._prepared = self._prepared, 0
        self._trace_chunks, self._log_chunks, self._shown = [], [], []
        if count != len(events):
            raise RuntimeError(f"{len(events)} events to write, {count} prepared")
        if line := self._progress.update():
            logs.append(line.encode())
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
            self._console.show("".join(shown))

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

    def _log_with_blocks(self, events: Sequence[Event], shown: list[str]) -> bytes:
        """The log lines with the header after ``workflow_start`` and the summary after the
        run's end; opens and closes the progress bar; adds the blocks to ``shown``."""
        parts: list[bytes] = []
        start = 0
        for index, event in enumerate(events):
            kind = type(event)
            if kind not in _LIFECYCLE:
                continue
            parts.append(encode_log(events[start:index]).encode())
            parts += encode_log_line(event)
            start = index + 1
            if kind is WorkflowStart:
                shown.append(header(self.layout, self._pid, self._started))
                parts.append(shown[-1].encode())
                self._progress.start()
            else:
                if last := self._progress.close():
                    parts.append(last.encode())
                shown.append(summary(event, self._state, self.layout, self._dropped()))
                parts.append(shown[-1].encode())
        parts.append(encode_log(events[start:]).encode())
        return b"".join(parts)

    async def aclose(self) -> None:
        """Final progress line, fsync and close the files, write the metadata.

        Raises SinkError naming each file that failed and how many events it lost.
        """
        if self._closed:  # never opened: nothing to close, no run to describe
            return
        if last := self._progress.close():
            for handle in self._logs:
                await handle.write(last.encode(), 0)
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
        await self._metadata.write(
            written=main_trace.written,
            lost=main_trace.lost,
            failures=self._failures(),
            trace_bytes=main_trace.size,
        )

    def _failures(self) -> dict[str, tuple[int, BaseException]]:
        """Every failure so far: the run's files, the console, the user's sinks."""
        failures = {
            str(name): (f.lost, f.error)
            for f in (*self._traces, *self._logs)
            if f.error is not None
            for name in f.names
        }
        if self._console.error is not None:
            failures["console"] = (0, self._console.error)
        failures.update(self._sink_failures())
        return failures


def _files_of(path: Path, audit: Path, linked: bool) -> tuple[AppendFile, ...]:
    if linked:
        return (AppendFile(path, aliases=(audit,)),)
    return (AppendFile(path), AppendFile(audit))
