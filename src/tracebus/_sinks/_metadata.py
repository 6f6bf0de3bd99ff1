"""The run's metadata file: every field the seed wrote, and the counts a reader needs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .._atomic import write_json_atomic
from .._events import SCHEMA_VERSION
from .._exceptions import describe
from .._layout import RunLayout
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


class MetadataFile:
    """A run's metadata file, written in one step as the run stands (a flush) and at its end."""

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
        await run_blocking(write_json_atomic, self.layout.metadata_file, self.metadata)
