"""The run's metadata file: every field the seed wrote, and the counts a reader needs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .._atomic import write_json_atomic
from .._events import SCHEMA_VERSION
from .._exceptions import describe
from .._layout import RunLayout, audit_home
from .._loop import run_blocking
from .._state import RunState
from .._text import utf8_text


def build_metadata(
    layout: RunLayout,
    state: RunState,
    *,
    pid: int,
    started: datetime,
    events_written: int,
    events_dropped: int,
    events_lost: int,
    write_errors: dict[str, dict[str, Any]],
    trace_bytes: int,
    sink_reports: dict[str, Any] | None = None,
) -> dict[str, Any]:
    counts = state.counts()
    metadata = {
        "workflow_id": layout.workflow_id,
        "run_id": layout.run_id,
        "step_number": layout.step_num,
        "status": state.status if state.finished is not None else "incomplete",
        "start_time": started.astimezone().isoformat(),
        "end_time": datetime.now().astimezone().isoformat(),
        "pid": pid,
        "total_nodes": state.total_nodes,
        **counts._asdict(),
        "nodes_untracked": state.tally.untracked,
        "total_time_seconds": state.elapsed(),
        "cumulative_cost_usd": state.cumulative_cost_usd,
        "node_times": state.node_times,
        "node_costs": state.node_costs,
        "node_details_dropped": state.node_details_dropped,
        "usage_by_model": state.usage_by_model,
        "node_usage": state.node_usage,
        "peak_in_flight": state.peak_in_flight,
        "error": state.error,
        "events_written": events_written,
        "trace_bytes": trace_bytes,
        "events_dropped": events_dropped,
        "events_lost": events_lost,
        "write_errors": write_errors,
        "log_file": utf8_text(str(layout.audit_log_file)),
        "trace_file": utf8_text(str(layout.audit_trace_file)),
        "execution_log_file": utf8_text(str(layout.log_file)),
        "execution_trace_file": utf8_text(str(layout.trace_file)),
        "schema_version": SCHEMA_VERSION,
    }
    if sink_reports:  # what the sinks that report say of themselves (OtlpExporter's counts)
        metadata["sinks"] = sink_reports
    return metadata


#: How often a write follows the run's audit copies when a later run of its step moves them
#: away while it writes.
_PLACES = 3


class MetadataFile:
    """A run's metadata file, written in one step as the run stands (a flush) and at its end,
    beside the run's audit copies wherever they are: a later run of the same step started
    meanwhile (a concurrent run, another workflow without a step number) moves them under
    ``previous/`` and makes the step's audit directory its own, so this run's metadata goes
    after them, never over the later run's."""

    def __init__(
        self,
        layout: RunLayout,
        state: RunState,
        *,
        pid: int,
        started: datetime,
        events_before: int,
        dropped: Callable[[], int],
        sink_reports: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.layout = layout
        self.metadata: dict[str, Any] | None = None
        #: Where the metadata is (last written).
        self.path = layout.metadata_file
        #: The device and inode of the run's audit trace, once its files are open.
        self.audit_identity: Callable[[], tuple[int, int] | None] = lambda: None
        self._state = state
        self._pid = pid
        self._started = started
        self._events_before = events_before  # already in the trace of a resumed run
        self._dropped = dropped
        self._sink_reports = sink_reports

    async def write(
        self,
        *,
        written: int,
        lost: int,
        failures: dict[str, tuple[int, BaseException]],
        trace_bytes: int,
    ) -> None:
        """Write the metadata: ``written`` events in the trace by this writer, ``lost`` that
        it could not take, every write failure so far, and the trace's size in bytes (by
        which a reader tells that the trace is still the one described). Raises OSError."""
        self.metadata = build_metadata(
            self.layout,
            self._state,
            pid=self._pid,
            started=self._started,
            events_written=self._events_before + written,
            events_dropped=self._dropped(),
            events_lost=lost,
            write_errors={
                utf8_text(name): {"events_lost": count, "error": utf8_text(describe(error))}
                for name, (count, error) in failures.items()
            },
            trace_bytes=trace_bytes,
            sink_reports=self._sink_reports(),
        )
        self.path = await run_blocking(self._write_beside_audit, self.metadata)

    def _write_beside_audit(self, metadata: dict[str, Any]) -> Path:
        layout = self.layout
        path = layout.metadata_file
        for _ in range(_PLACES):
            home = self._audit_home()
            path = home / layout.metadata_file.name
            if home != layout.audit_dir:
                metadata["log_file"] = utf8_text(str(home / layout.audit_log_file.name))
                metadata["trace_file"] = utf8_text(str(home / layout.audit_trace_file.name))
            write_json_atomic(path, metadata)
            # a later run may have moved the audit copies between the look and the write
            if home != layout.audit_dir or self._audit_home() == home:
                break
        return path

    def _audit_home(self) -> Path:
        layout, identity = self.layout, self.audit_identity()
        if identity is None:
            return layout.audit_dir
        home = audit_home(layout, identity)
        if home is not None:
            return home
        if not layout.audit_trace_file.exists():  # removed: the directory is still this run's
            return layout.audit_dir
        # the copies are gone and the directory is another run's: a directory of this run's own
        home = layout.audit_dir / "previous" / f"{layout.stamp}_{layout.run_id}"
        home.mkdir(parents=True, exist_ok=True)
        return home
