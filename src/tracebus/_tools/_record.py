"""A run read back whole: its nodes and their attempts, notes and outcome, as records.

Built by the one pass of ``_scan`` from the trace's dicts, so unknown event types and fields
are kept; ``RunRecord.events`` reads the trace again when asked rather than holding it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import msgspec

from .._counts import NodeCounts
from .._events import COMMON_FIELDS
from ._find import FoundRun, find_run
from ._lines import TraceLine, decode_typed
from ._reader import iter_trace
from ._scan import KNOWN_TYPES, RunFacts, RunScan
from ._usage import add_usage, counters_of, new_totals


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
    ended), or ``"pending"`` when only retries were seen (or it was only named as a parent);
    see ``NodeCounts``. ``parent_id`` is the enclosing node (None at the top level),
    ``children`` the ids of the nodes it encloses in order of start, ``depends_on`` the
    upstream nodes its start named. ``usage_by_model`` totals its ``usage`` events per model
    (``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` and other counters).
    """

    node_id: str
    node_index: int | None
    status: str
    attempts: tuple[NodeAttempt, ...]
    retries: tuple[Mapping[str, Any], ...] = ()
    parent_id: str | None = None
    children: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    usage_by_model: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return int(sum(u["input_tokens"] for u in self.usage_by_model.values()))

    @property
    def output_tokens(self) -> int:
        return int(sum(u["output_tokens"] for u in self.usage_by_model.values()))

    @property
    def usage_cost_usd(self) -> float:
        """What its model calls cost (``cost_usd`` is the node's own cost, as reported)."""
        return sum((u["cost_usd"] for u in self.usage_by_model.values()), 0.0)

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
    is every event of the run as read, unknown types and fields included (read from the
    trace again each time it is iterated, so that a large run is not held in memory); ``warnings``
    says what was tolerated (a torn last line, earlier runs in the same file, unknown event
    types, unreadable metadata, events the producer dropped). ``counts`` are the run's node
    and attempt counts, defined as the writer's (``NodeCounts``). ``usage_by_model`` totals
    the ``usage`` events per model, as the metadata's key of that name does.
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
    events: Sequence[Mapping[str, Any]]
    trace_file: Path
    metadata_file: Path | None = None
    metadata: Mapping[str, Any] | None = None
    reported_cost_usd: float | None = None
    seed_format: bool = False
    torn_line: int | None = None
    warnings: tuple[str, ...] = ()
    counts: NodeCounts = NodeCounts(0, 0, 0, 0, 0, 0, 0, 0)
    usage_by_model: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    usage_cost_usd: float = 0.0

    @property
    def top_level(self) -> tuple[NodeRecord, ...]:
        """The nodes without a parent, in order of first appearance."""
        return tuple(n for n in self.nodes if n.parent_id is None)

    def node(self, node_id: str) -> NodeRecord:
        """The node of that id; raises KeyError when the run has none."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

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
        """The cost reported at completion, else the sum of the nodes' costs and the model
        calls'; None (unknown) for a run that did not complete and reported no cost at all,
        as its metadata says."""
        if self.reported_cost_usd is not None:
            return self.reported_cost_usd
        costs = [n.cost_usd for n in self.nodes if n.cost_usd]
        if self.usage_cost_usd:
            costs.append(self.usage_cost_usd)
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
    lines = iter_trace(found.trace_file, lambda number, _raw: torn.append(number))
    return _build(lines, found, lambda: torn[0] if torn else None, None)


def build_run(
    events: Sequence[dict[str, Any]], found: FoundRun, *, torn_line: int | None = None
) -> RunRecord:
    """Assemble a RunRecord from a trace's events (in file order)."""
    return _build(events, found, lambda: torn_line, events)


def _build(
    events: Iterable[dict[str, Any]],
    found: FoundRun,
    torn_line: Any,
    held: Sequence[dict[str, Any]] | None,
) -> RunRecord:
    scan = RunScan(_RecordSink)
    for number, event in enumerate(events, start=1):
        scan.sink.event = event
        scan.add(decode_typed(msgspec.json.encode(event), number, found.trace_file))
    facts = scan.finish(found, torn_line=torn_line())
    sink = scan.sink
    nodes: list[NodeRecord] = []
    for slot, node_id in enumerate(facts.node_ids):
        attempts = sink.attempts.get(slot, [])
        attempts.sort(key=lambda a: a.start)
        nodes.append(
            NodeRecord(
                node_id,
                facts.node_index(slot),
                facts.node_status(slot),
                tuple(attempts),
                tuple(sink.retries.get(slot, ())),
                parent_id=facts.parent_id(slot),
                children=tuple(facts.children_of(slot)),
                depends_on=facts.depends_on(slot),
                usage_by_model=sink.node_usage.get(node_id, {}),
            )
        )
    kept: Sequence[Mapping[str, Any]]
    if held is None:
        kept = TraceEvents(found.trace_file, facts.skipped_runs, facts.events)
    else:
        kept = tuple(held[len(held) - facts.events :])
    return RunRecord(
        workflow_id=facts.workflow_id,
        run_id=facts.run_id,
        status=facts.status,
        error=facts.error,
        total_nodes=facts.total_nodes,
        started=facts.started,
        ended=facts.ended,
        nodes=tuple(nodes),
        notes=tuple(sink.notes),
        events=kept,
        trace_file=found.trace_file,
        metadata_file=found.metadata_file,
        metadata=found.metadata,
        reported_cost_usd=facts.reported_cost_usd,
        seed_format=facts.seed_format,
        torn_line=facts.torn_line,
        warnings=facts.warnings,
        counts=facts.counts,
        usage_by_model=facts.usage_by_model,
        usage_cost_usd=facts.usage_cost_usd,
    )


class _RecordSink:
    """Keeps every attempt, retry and note whole; ``event`` is the dict of the line fed."""

    def __init__(self) -> None:
        self.event: dict[str, Any] = {}
        self.attempts: dict[int, list[NodeAttempt]] = {}
        self.retries: dict[int, list[Mapping[str, Any]]] = {}
        self.notes: list[Mapping[str, Any]] = []
        #: per node id, per model
        self.node_usage: dict[str, dict[str, dict[str, float]]] = {}

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        attempts = self.attempts.setdefault(slot, [])
        if line is None:
            attempts.append(NodeAttempt(node_id, len(attempts) + 1, status, start, None))
            return
        event = self.event
        attempts.append(
            NodeAttempt(
                node_id=node_id,
                number=len(attempts) + 1,
                status=status,
                start=start,
                end=end,
                duration_seconds=line.duration_seconds,
                cost_usd=line.cost_usd or 0.0,
                error=line.error if status == "failed" else None,
                output_hash=line.output_hash,
                output_summary=event.get("output_summary"),
                fields={k: v for k, v in event.items() if k not in COMMON_FIELDS},
            )
        )

    def retry(self, slot: int, line: TraceLine) -> None:
        self.retries.setdefault(slot, []).append(self.event)

    def note(self, line: TraceLine) -> None:
        self.notes.append(self.event)

    def usage(self, slot: int | None, line: TraceLine, during: bool) -> None:
        if line.node_id is None:
            return
        models = self.node_usage.setdefault(line.node_id, {})
        model = line.model if line.model is not None else ""
        totals = models.get(model)
        if totals is None:
            totals = models[model] = new_totals(calls=True)
        add_usage(totals, line, counters_of(line))

    def close(self, facts: RunFacts) -> None:
        pass


class TraceEvents(Sequence[Mapping[str, Any]]):
    """The events of a trace's last run, read from the file each time they are asked for."""

    def __init__(self, trace_file: Path, skipped_runs: int, count: int) -> None:
        self._trace_file = trace_file
        self._skipped_runs = skipped_runs
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TraceEvents | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{self._count} events of {self._trace_file}>"

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        events = iter_trace(self._trace_file)
        if self._skipped_runs:
            starts = 0
            for event in events:
                if event.get("event_type") == "workflow_start":
                    starts += 1
                    if starts > self._skipped_runs:
                        yield event
                        break
        yield from events

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("event index out of range")
        return next(itertools.islice(self, index, None))


def _attempt_seconds(attempt: NodeAttempt) -> float:
    if attempt.duration_seconds is not None:
        return max(0.0, attempt.duration_seconds)
    if attempt.end is not None:
        return attempt.end - attempt.start
    return 0.0
