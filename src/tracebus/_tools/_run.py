"""A run read back: its nodes and their attempts, notes and outcome, from trace and metadata.

Works on the raw dicts of the trace, so traces of the seed observer (no ``run_id``, no
``seq``, ``node_index`` often missing) and of later schema versions (unknown event types and
fields) read as well as today's.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._counts import COMPLETED, FAILED, SKIPPED, NodeCounts, NodeTally
from ._find import FoundRun, find_run
from ._reader import iter_trace

#: Fields every event carries; the others of a node's end event are its ``fields``.
COMMON_FIELDS = frozenset(
    {
        "event_type",
        "timestamp",
        "epoch_seconds",
        "pid",
        "workflow_id",
        "run_id",
        "seq",
        "schema_version",
        "producer",
    }
)

KNOWN_TYPES = frozenset(
    {
        "workflow_start",
        "node_start",
        "node_success",
        "node_failure",
        "node_skipped",
        "node_retry",
        "note",
        "workflow_complete",
        "workflow_error",
        "encode_error",
    }
)

_END_STATUS = {"node_success": "success", "node_failure": "failed", "node_skipped": "skipped"}
_TALLIED = {"node_success": COMPLETED, "node_failure": FAILED, "node_skipped": SKIPPED}


@dataclass(frozen=True, slots=True)
class NodeAttempt:
    """One execution of a node, from its ``node_start`` to its end event.

    ``status`` is ``"success"``, ``"failed"``, ``"skipped"`` or ``"running"`` (no end event:
    the trace stops first). ``start`` and ``end`` are epoch seconds; without a ``node_start``
    the start is the end minus the reported duration. ``fields`` holds every field of the end
    event beyond the common ones, those of later schema versions included.
    """

    node_id: str
    number: int
    status: str
    start: float
    end: float | None
    duration_seconds: float | None = None
    cost_usd: float = 0.0
    error: str | None = None
    output_hash: str | None = None
    output_summary: Any = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node of the run: its attempts in order and its ``node_retry`` events.

    ``status`` is that of its latest attempt in trace order (``"running"`` while it has not
    ended), or ``"pending"`` when only retries were seen; see ``NodeCounts``.
    """

    node_id: str
    node_index: int | None
    status: str
    attempts: tuple[NodeAttempt, ...]
    retries: tuple[Mapping[str, Any], ...] = ()

    @property
    def retried(self) -> bool:
        return bool(self.retries) or len(self.attempts) > 1

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    @property
    def duration_seconds(self) -> float:
        """Reported durations of all attempts, summed (an attempt still running counts 0)."""
        return sum(_attempt_seconds(a) for a in self.attempts)

    @property
    def error(self) -> str | None:
        """The last attempt's error when the node failed."""
        return self.attempts[-1].error if self.status == "failed" else None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run read back by ``read_run``.

    ``status`` is ``"complete"`` (workflow_complete), ``"error"`` (workflow_error) or
    ``"incomplete"`` (the trace ends without either: killed, or still running). ``events``
    holds every event of the run as read, unknown types and fields included; ``warnings``
    says what was tolerated (a torn last line, earlier runs in the same file, unknown event
    types, unreadable metadata, events the producer dropped). ``counts`` are the run's node
    and attempt counts, defined as the writer's (``NodeCounts``).
    """

    workflow_id: str
    run_id: str | None
    status: str
    error: str | None
    total_nodes: int
    started: float | None
    ended: float | None
    nodes: tuple[NodeRecord, ...]
    notes: tuple[Mapping[str, Any], ...]
    events: tuple[Mapping[str, Any], ...]
    trace_file: Path
    metadata_file: Path | None = None
    metadata: Mapping[str, Any] | None = None
    reported_cost_usd: float | None = None
    seed_format: bool = False
    torn_line: int | None = None
    warnings: tuple[str, ...] = ()
    counts: NodeCounts = NodeCounts(0, 0, 0, 0, 0, 0, 0, 0)

    @property
    def wall_seconds(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)

    @property
    def failed_nodes(self) -> tuple[NodeRecord, ...]:
        return tuple(n for n in self.nodes if n.status == "failed")

    @property
    def cost_usd(self) -> float | None:
        """The cost reported at completion, else the sum of the nodes' costs; None (unknown)
        for a run that did not complete and reported no cost at all, as its metadata says."""
        if self.reported_cost_usd is not None:
            return self.reported_cost_usd
        costs = [n.cost_usd for n in self.nodes if n.cost_usd]
        if self.status != "complete" and not costs:
            return None
        return sum(costs, 0.0)

    @property
    def ok(self) -> bool:
        """Completed, with no node whose last attempt failed."""
        return self.status == "complete" and not self.failed_nodes

    @property
    def unknown_events(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(e for e in self.events if e.get("event_type") not in KNOWN_TYPES)


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read a run: its trace and, where found, its metadata.

    ``path`` is a trace file, a ``metadata_NN.json``, an audit step directory, or an output
    directory (its latest run). A torn last line is skipped and reported in ``warnings``.
    Raises RunNotFoundError when the path holds no run, TraceFormatError when a line other
    than the last is not a JSON object, and OSError when a file cannot be read.
    """
    found = find_run(path)
    torn: list[int] = []
    events = list(iter_trace(found.trace_file, lambda number, _raw: torn.append(number)))
    return build_run(events, found, torn_line=torn[0] if torn else None)


def build_run(
    events: Sequence[dict[str, Any]], found: FoundRun, *, torn_line: int | None = None
) -> RunRecord:
    """Assemble a RunRecord from a trace's events (in file order)."""
    warnings = list(found.warnings)
    if torn_line is not None:
        warnings.append(
            f"{found.trace_file}:{torn_line}: torn last line ignored "
            "(the writer was stopped in the middle of it)"
        )
    starts = [i for i, e in enumerate(events) if e.get("event_type") == "workflow_start"]
    if len(starts) > 1:
        warnings.append(
            f"the trace holds {len(starts)} runs; reading the last one "
            f"(started {events[starts[-1]].get('timestamp', '?')})"
        )
        events = events[starts[-1] :]
    builder = _Builder()
    for event in events:
        builder.add(event)
    metadata = found.metadata
    unknown = sorted({str(e.get("event_type")) for e in events} - KNOWN_TYPES)
    if unknown:
        warnings.append(f"events of unknown types kept as raw data: {', '.join(unknown)}")
    unencoded = [e for e in events if e.get("event_type") == "encode_error"]
    if unencoded:
        kinds = sorted({str(e.get("failed_event_type")) for e in unencoded})
        warnings.append(
            f"{len(unencoded)} event(s) could not be encoded by the writer and are "
            f"encode_error records in the trace ({', '.join(kinds)})"
        )
    if builder.untimed:
        warnings.append(f"{builder.untimed} event(s) without a numeric epoch_seconds")
    if metadata is not None:
        for key, what in (
            ("events_dropped", "dropped by the producer's overflow policy"),
            ("events_lost", "lost by the writer"),
        ):
            count = metadata.get(key)
            if isinstance(count, int) and count > 0:
                warnings.append(f"{count} event(s) {what}: the trace is not the whole run")
    return builder.finish(found, events, metadata, torn_line, warnings)


class _NodeState:
    __slots__ = ("index", "attempts", "open", "retries")

    def __init__(self) -> None:
        self.index: int | None = None
        self.attempts: list[NodeAttempt] = []
        self.open: deque[float] = deque()
        self.retries: list[Mapping[str, Any]] = []


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, _NodeState] = {}
        self.notes: list[Mapping[str, Any]] = []
        self.start_event: Mapping[str, Any] | None = None
        self.end_event: Mapping[str, Any] | None = None
        self.error: str | None = None
        self.first: float | None = None
        self.last: float | None = None
        self.untimed = 0
        self.has_run_id = False
        self.tally = NodeTally()

    def add(self, event: dict[str, Any]) -> None:
        epoch = _number(event.get("epoch_seconds"))
        if epoch is None:
            self.untimed += 1
            epoch = self.last if self.last is not None else 0.0
        else:
            self.first = epoch if self.first is None else min(self.first, epoch)
            self.last = epoch if self.last is None else max(self.last, epoch)
        self.has_run_id = self.has_run_id or "run_id" in event
        kind = event.get("event_type")
        if kind == "workflow_start":
            self.start_event = self.start_event or event
        elif kind == "workflow_error":
            self.error = _text(event.get("error")) or "workflow error"
            self.end_event = event
        elif kind == "workflow_complete":
            if self.error is None:
                self.end_event = event
        elif kind == "note":
            self.notes.append(event)
        elif kind in ("node_start", "node_retry") or kind in _END_STATUS:
            self._node_event(str(kind), event, epoch)

    def _node_event(self, kind: str, event: dict[str, Any], epoch: float) -> None:
        node_id = event.get("node_id")
        if node_id is None:
            return
        node = self.nodes.setdefault(str(node_id), _NodeState())
        index = event.get("node_index")
        if isinstance(index, int) and not isinstance(index, bool):
            node.index = index
        if kind == "node_start":
            node.open.append(epoch)
            self.tally.start(str(node_id))
        elif kind == "node_retry":
            node.retries.append(event)
            self.tally.retry(str(node_id))
        else:
            node.attempts.append(self._attempt(str(node_id), node, kind, event, epoch))
            self.tally.end(str(node_id), _TALLIED[kind])

    @staticmethod
    def _attempt(
        node_id: str, node: _NodeState, kind: str, event: dict[str, Any], end: float
    ) -> NodeAttempt:
        duration = _number(event.get("duration_seconds"))
        if node.open:
            start = node.open.popleft()
        else:  # no earlier than the epoch: a duration as long as 10**15 s is a valid one
            start = max(0.0, end - duration) if duration is not None and duration > 0 else end
        output_hash = event.get("output_hash")
        return NodeAttempt(
            node_id=node_id,
            number=len(node.attempts) + 1,
            status=_END_STATUS[kind],
            start=min(start, end),
            end=end,
            duration_seconds=duration,
            cost_usd=_number(event.get("cost_usd")) or 0.0,
            error=_text(event.get("error")) if kind == "node_failure" else None,
            output_hash=output_hash if isinstance(output_hash, str) else None,
            output_summary=event.get("output_summary"),
            fields={k: v for k, v in event.items() if k not in COMMON_FIELDS},
        )

    def finish(
        self,
        found: FoundRun,
        events: Sequence[dict[str, Any]],
        metadata: Mapping[str, Any] | None,
        torn_line: int | None,
        warnings: list[str],
    ) -> RunRecord:
        nodes: list[NodeRecord] = []
        for node_id, state in self.nodes.items():
            attempts = list(state.attempts)
            for start in state.open:
                attempts.append(
                    NodeAttempt(node_id, len(attempts) + 1, "running", start, None, fields={})
                )
            attempts.sort(key=lambda a: a.start)
            status = self.tally.status(node_id) or "pending"
            nodes.append(
                NodeRecord(node_id, state.index, status, tuple(attempts), tuple(state.retries))
            )
        first = self.start_event or (events[0] if events else None)
        meta = metadata or {}
        total = _int(self.start_event.get("total_nodes")) if self.start_event else None
        if total is None:
            total = _int(meta.get("total_nodes"))
        started = _number(self.start_event.get("epoch_seconds")) if self.start_event else None
        ended = _number(self.end_event.get("epoch_seconds")) if self.end_event else None
        starts = [a.start for n in nodes for a in n.attempts]
        ends = [a.end for n in nodes for a in n.attempts if a.end is not None]
        started = min([*starts, *_given(started, self.first)], default=None)
        ended = max([*ends, *_given(ended, self.last)], default=None)
        reported = None
        if self.end_event is not None and self.end_event.get("event_type") == "workflow_complete":
            reported = _number(self.end_event.get("cumulative_cost_usd"))
        status = "incomplete"
        if self.end_event is not None:
            status = "error" if self.error is not None else "complete"
        return RunRecord(
            workflow_id=_text(first.get("workflow_id") if first else None)
            or _text(meta.get("workflow_id"))
            or "",
            run_id=_text(first.get("run_id") if first else None) or _text(meta.get("run_id")),
            status=status,
            error=self.error,
            total_nodes=max(total or 0, len(nodes)),
            started=started,
            ended=ended,
            nodes=tuple(nodes),
            notes=tuple(self.notes),
            events=tuple(events),
            trace_file=found.trace_file,
            metadata_file=found.metadata_file,
            metadata=metadata,
            reported_cost_usd=reported,
            seed_format=bool(events) and not self.has_run_id,
            torn_line=torn_line,
            warnings=tuple(warnings),
            counts=self.tally.counts(),
        )


def _attempt_seconds(attempt: NodeAttempt) -> float:
    if attempt.duration_seconds is not None:
        return max(0.0, attempt.duration_seconds)
    if attempt.end is not None:
        return attempt.end - attempt.start
    return 0.0


def _given(value: float | None, fallback: float | None) -> list[float]:
    chosen = value if value is not None else fallback
    return [] if chosen is None else [chosen]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
