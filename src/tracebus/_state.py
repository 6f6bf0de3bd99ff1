"""What the writer knows of a run: its counts and per-node figures, kept from the stamped
events.

Only the writer task touches a RunState, so nothing here is locked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ._counts import COMPLETED, FAILED, OPEN, SKIPPED, NodeCounts, NodeTally
from ._events import (
    Event,
    NodeFailure,
    NodeRetry,
    NodeSkipped,
    NodeStart,
    NodeSuccess,
    Usage,
    WorkflowComplete,
    WorkflowError,
    WorkflowStart,
)
from ._stamping import Stamper

#: Per-node durations and costs kept for the metadata and the completion event, and per-node
#: statuses kept for the counts (see ``NodeTally``). Past this many nodes only the totals
#: grow, so a run of millions of nodes keeps flat memory; the number of end events of nodes
#: left out of the durations is ``node_details_dropped``. The nodes in flight (started, not
#: ended) are followed up to as many; a node started past that is counted but not followed.
MAX_NODE_DETAILS = 100_000


class RunState:
    """Counts and per-node figures of one run, as seen by its writer."""

    def __init__(
        self,
        workflow_id: str,
        run_id: str,
        total_nodes: int,
        started: float,
        *,
        max_node_details: int = MAX_NODE_DETAILS,
    ) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.total_nodes = total_nodes
        self.started = started
        self.finished: float | None = None
        #: The stamping of the run's writer, which knows what each producer delivered (its
        #: own until ``open_run`` gives it the writer's).
        self.stamper = Stamper()
        self.events = 0
        self.tally: NodeTally[str] = NodeTally(max_node_details)
        self.node_times: dict[str, float] = {}
        self.node_costs: dict[str, float] = {}
        self.node_details_dropped = 0
        self.cost_usd = 0.0
        #: Per model and per node: the totals of their ``usage`` events (see ``add_usage``).
        self.usage_by_model: dict[str, dict[str, float]] = {}
        self.node_usage: dict[str, dict[str, float]] = {}
        self.in_flight: dict[str, int | None] = {}  # node_id -> node_index
        self.peak_in_flight = 0
        self.status = "running"
        self.error: str | None = None
        self.reported_cost: float | None = None
        self.trace_file = ""
        self.log_file = ""
        self._max_node_details = max_node_details

    @property
    def nodes_completed(self) -> int:
        return self.tally.completed

    @property
    def nodes_failed(self) -> int:
        return self.tally.failed

    @property
    def nodes_skipped(self) -> int:
        return self.tally.skipped

    @property
    def nodes_done(self) -> int:
        """Nodes with a final status (completed, failed or skipped)."""
        tally = self.tally
        return tally.completed + tally.failed + tally.skipped

    def counts(self) -> NodeCounts:
        return self.tally.counts()

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished if self.finished is not None else (now or time.time())
        return max(0.0, end - self.started)

    @property
    def last_seq(self) -> dict[str, int]:
        """The highest ``seq`` written per remote producer (see Stamper)."""
        return self.stamper.last_seq

    @property
    def duplicates(self) -> int:
        return self.stamper.duplicates

    def apply(self, batch: Iterable[Event]) -> list[Event]:
        """Stamp ``batch`` as the writer does (a run's replayed trace), then count it.
        Returns the events kept (see Stamper)."""
        return self.count(self.stamper(batch))

    def count(self, batch: list[Event]) -> list[Event]:
        """Add the stamped events of ``batch`` to the counts and per-node figures; fill in the
        ``node_index`` of a node's end and the run's figures on its end. Returns ``batch``."""
        # The writer's per-event hot path: node starts and successes are handled inline (as
        # _end and the tally's start and end would, for a node's first attempt) with the
        # tables in locals; other kinds and cases go through the methods.
        in_flight, node_times = self.in_flight, self.node_times
        max_details, peak = self._max_node_details, self.peak_in_flight
        tally = self.tally
        statuses = tally.table
        began = succeeded = 0  # first attempts started and succeeded, added to the tally after
        try:
            for event in batch:
                kind = type(event)
                if kind is NodeStart:
                    start: NodeStart = event  # type: ignore[assignment]
                    node_id = start.node_id
                    if len(in_flight) < max_details or node_id in in_flight:
                        in_flight[node_id] = start.node_index
                        if len(in_flight) > peak:
                            peak = len(in_flight)
                    if node_id not in statuses and len(statuses) < max_details:
                        statuses[node_id] = OPEN
                        began += 1
                    else:
                        tally.start(node_id)
                elif kind is NodeSuccess:
                    success: NodeSuccess = event  # type: ignore[assignment]
                    node_id = success.node_id
                    index = in_flight.pop(node_id, None)
                    if success.node_index is None:
                        success.node_index = index
                    cost = success.cost_usd
                    if len(node_times) < max_details or node_id in node_times:
                        node_times[node_id] = success.duration_seconds
                        if cost:
                            self.node_costs[node_id] = self.node_costs.get(node_id, 0.0) + cost
                    else:
                        self.node_details_dropped += 1
                    if cost:
                        self.cost_usd += cost
                    if statuses.get(node_id) == OPEN:  # its first attempt, the only one open
                        statuses[node_id] = COMPLETED
                        succeeded += 1
                    else:
                        tally.end(node_id, COMPLETED)
                elif kind is NodeFailure:
                    self._end(event)  # type: ignore[arg-type]
                elif kind is NodeSkipped or kind is NodeRetry:
                    self._other_node_event(event)  # type: ignore[arg-type]
                elif kind is Usage:
                    self._usage(event)  # type: ignore[arg-type]
                elif kind is WorkflowComplete or kind is WorkflowError:
                    tally.unfinished += began - succeeded  # the counts as of this event
                    tally.completed += succeeded
                    began = succeeded = 0
                    self._finish(event)  # type: ignore[arg-type]
                elif kind is WorkflowStart:
                    self.started = min(self.started, event.epoch_seconds)
        finally:
            tally.unfinished += began - succeeded
            tally.completed += succeeded
            self.peak_in_flight = peak
            self.events += len(batch)
        return batch

    def _end(self, event: NodeSuccess | NodeFailure) -> None:
        node_id = event.node_id
        index = self.in_flight.pop(node_id, None)
        if event.node_index is None:
            event.node_index = index
        self.cost_usd += event.cost_usd
        if node_id in self.node_times or len(self.node_times) < self._max_node_details:
            self.node_times[node_id] = event.duration_seconds
            if event.cost_usd:
                self.node_costs[node_id] = self.node_costs.get(node_id, 0.0) + event.cost_usd
        else:
            self.node_details_dropped += 1
        if isinstance(event, NodeFailure):
            self.tally.end(node_id, FAILED)
        else:
            self.tally.end(node_id, COMPLETED)

    def _other_node_event(self, event: NodeSkipped | NodeRetry) -> None:
        if event.node_index is None:
            event.node_index = self.in_flight.get(event.node_id)
        if isinstance(event, NodeSkipped):
            self.in_flight.pop(event.node_id, None)
            self.tally.end(event.node_id, SKIPPED)
        else:
            self.tally.retry(event.node_id)

    def _usage(self, event: Usage) -> None:
        """Add a model call's tokens and cost to its model's totals, its node's (for the
        first MAX_NODE_DETAILS nodes and models) and the run's cost."""
        self.cost_usd += event.cost_usd
        by_model = self.usage_by_model
        totals = by_model.get(event.model)
        if totals is None and len(by_model) < self._max_node_details:
            totals = by_model[event.model] = {"calls": 0, **_NO_USAGE}
        if totals is not None:
            totals["calls"] += 1
            _add_usage(totals, event)
        node_id = event.node_id
        if node_id is not None:
            node = self.node_usage.get(node_id)
            if node is None and len(self.node_usage) < self._max_node_details:
                node = self.node_usage[node_id] = dict(_NO_USAGE)
            if node is not None:
                _add_usage(node, event)

    def _finish(self, event: WorkflowComplete | WorkflowError) -> None:
        self.finished = event.epoch_seconds
        for name, value in zip(NodeCounts._fields, self.tally.counts(), strict=True):
            setattr(event, name, value)
        event.total_time_seconds = self.elapsed()
        if isinstance(event, WorkflowError):
            self.status = "error"
            self.error = event.error
            return
        if self.status != "error":
            self.status = "complete"
        if event.cumulative_cost_usd is None:
            event.cumulative_cost_usd = self.cumulative_cost_usd  # None after an error, unknown
        else:
            self.reported_cost = event.cumulative_cost_usd
        event.node_times = dict(self.node_times)
        if self.usage_by_model:
            event.usage_by_model = {model: dict(t) for model, t in self.usage_by_model.items()}
        event.trace_file = self.trace_file
        event.log_file = self.log_file

    @property
    def cumulative_cost_usd(self) -> float | None:
        """The cost the producer reported at completion, else the sum of node costs; None
        (unknown) for a run that did not complete and reported no cost at all, which is what
        the seed's ``workflow_error`` leaves: a failed run's cost is not zero."""
        if self.reported_cost is not None:
            return self.reported_cost
        if self.status != "complete" and not self.node_costs and not self.cost_usd:
            return None
        return self.cost_usd


_NO_USAGE: dict[str, float] = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}


def _add_usage(totals: dict[str, float], event: Usage) -> None:
    totals["input_tokens"] += event.input_tokens
    totals["output_tokens"] += event.output_tokens
    totals["cost_usd"] += event.cost_usd
    for name, count in event.counters.items():
        totals[name] = totals.get(name, 0) + count
