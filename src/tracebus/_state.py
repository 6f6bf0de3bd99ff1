"""What the writer knows of a run: it stamps events in arrival order and keeps the counts.

Only the writer task touches a RunState, so nothing here is locked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from ._events import (
    Event,
    NodeFailure,
    NodeRetry,
    NodeSkipped,
    NodeStart,
    NodeSuccess,
    WorkflowComplete,
    WorkflowError,
    WorkflowStart,
)

_DIGITS = tuple(f"{n:03d}" for n in range(1000))


class IsoClock:
    """Formats epoch seconds as ISO 8601 in UTC, formatting each second's prefix once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        second = int(epoch)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        micros = int((epoch - second) * 1_000_000)
        if 0 <= micros < 1_000_000:
            # two table look-ups instead of an int format: this runs once per event
            return f"{self._prefix}{_DIGITS[micros // 1000]}{_DIGITS[micros % 1000]}+00:00"
        return f"{self._prefix}{micros:06d}+00:00"


class RunState:
    """Counts and per-node figures of one run, as seen by its writer."""

    def __init__(self, workflow_id: str, run_id: str, total_nodes: int, started: float) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.total_nodes = total_nodes
        self.started = started
        self.finished: float | None = None
        self.seq = 0
        self.events = 0
        self.nodes_completed = 0
        self.nodes_failed = 0
        self.nodes_skipped = 0
        self.nodes_retried = 0
        self.node_times: dict[str, float] = {}
        self.node_costs: dict[str, float] = {}
        self.node_index: dict[str, int] = {}
        self.in_flight: dict[str, float] = {}
        self.peak_in_flight = 0
        self.failures: dict[str, str] = {}
        self.status = "running"
        self.error: str | None = None
        self.reported_cost: float | None = None
        self.trace_file = ""
        self.log_file = ""
        self._iso = IsoClock()

    @property
    def nodes_done(self) -> int:
        return self.nodes_completed + self.nodes_failed + self.nodes_skipped

    @property
    def cost_usd(self) -> float:
        return sum(self.node_costs.values())

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished if self.finished is not None else (now or time.time())
        return max(0.0, end - self.started)

    def apply(self, batch: Iterable[Event]) -> None:
        """Stamp ``seq`` (unless a remote producer set it) and ``timestamp``; update counts."""
        # The writer's per-event hot path: node starts and ends are handled inline, with the
        # tables in locals; the rarer kinds go through the methods below.
        iso = self._iso
        in_flight, node_index, node_times = self.in_flight, self.node_index, self.node_times
        seq, count = self.seq, 0
        try:
            for event in batch:
                count += 1
                if not event.seq:
                    seq += 1
                    event.seq = seq
                if not event.timestamp:
                    event.timestamp = iso(event.epoch_seconds)
                kind = type(event)
                if kind is NodeStart:
                    start: NodeStart = event  # type: ignore[assignment]
                    if start.node_index is not None:
                        node_index[start.node_id] = start.node_index
                    in_flight[start.node_id] = start.epoch_seconds
                    if len(in_flight) > self.peak_in_flight:
                        self.peak_in_flight = len(in_flight)
                elif kind is NodeSuccess:
                    success: NodeSuccess = event  # type: ignore[assignment]
                    node_id = success.node_id
                    if success.node_index is None:
                        success.node_index = node_index.get(node_id)
                    in_flight.pop(node_id, None)
                    node_times[node_id] = success.duration_seconds
                    if success.cost_usd:
                        self._add_cost(node_id, success.cost_usd)
                    self.nodes_completed += 1
                elif kind is NodeFailure:
                    self._end(event)  # type: ignore[arg-type]
                elif kind is NodeSkipped or kind is NodeRetry:
                    self._other_node_event(event)  # type: ignore[arg-type]
                elif kind is WorkflowComplete or kind is WorkflowError:
                    self._finish(event)  # type: ignore[arg-type]
                elif kind is WorkflowStart:
                    self.started = min(self.started, event.epoch_seconds)
        finally:
            self.seq = seq
            self.events += count

    def _end(self, event: NodeSuccess | NodeFailure) -> None:
        node_id = event.node_id
        if event.node_index is None:
            event.node_index = self.node_index.get(node_id)
        self.in_flight.pop(node_id, None)
        self.node_times[node_id] = event.duration_seconds
        if event.cost_usd:
            self._add_cost(node_id, event.cost_usd)
        if isinstance(event, NodeFailure):
            self.nodes_failed += 1
            self.failures[node_id] = event.error
        else:
            self.nodes_completed += 1

    def _add_cost(self, node_id: str, cost_usd: float) -> None:
        self.node_costs[node_id] = self.node_costs.get(node_id, 0.0) + cost_usd

    def _other_node_event(self, event: NodeSkipped | NodeRetry) -> None:
        if event.node_index is None:
            event.node_index = self.node_index.get(event.node_id)
        if isinstance(event, NodeSkipped):
            self.in_flight.pop(event.node_id, None)
            self.nodes_skipped += 1
        else:
            self.nodes_retried += 1

    def _finish(self, event: WorkflowComplete | WorkflowError) -> None:
        self.finished = event.epoch_seconds
        event.nodes_completed = self.nodes_completed
        event.nodes_failed = self.nodes_failed
        event.total_time_seconds = self.elapsed()
        if isinstance(event, WorkflowError):
            self.status = "error"
            self.error = event.error
            return
        if self.status != "error":
            self.status = "complete"
        if event.cumulative_cost_usd is None:
            event.cumulative_cost_usd = self.cost_usd
        else:
            self.reported_cost = event.cumulative_cost_usd
        event.nodes_skipped = self.nodes_skipped
        event.node_times = dict(self.node_times)
        event.trace_file = self.trace_file
        event.log_file = self.log_file

    @property
    def cumulative_cost_usd(self) -> float:
        """The cost the producer reported at completion, else the sum of node costs."""
        return self.reported_cost if self.reported_cost is not None else self.cost_usd
