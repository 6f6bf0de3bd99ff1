"""One pass over a trace: the run's facts, and each node attempt handed on as it ends.

Works on TraceLines, so traces of the seed observer (no ``run_id``, no ``seq``,
``node_index`` often missing) and of later schema versions (unknown event types and fields)
read as well as today's. Only what the run's facts need is kept: the nodes' ids, indices,
counts, parents and dependencies, the token usage totals, and the start times of the
attempts still open. What an output needs of each attempt is for its ``NodeSink`` to keep.

A node's parent and dependencies are those its first ``node_start`` that names them gives
(a version 1 trace has neither: every node is top-level). A parent named before it starts
(``parent=`` a node started later, or never) is a node of the run from then on.
"""

from __future__ import annotations

import dataclasses
import os
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from .._counts import COMPLETED, FAILED, OPEN, SKIPPED, NodeCounts, NodeTally
from .._events import TRACE_EVENT_TYPES
from ._find import FoundRun, find_run
from ._lines import TraceLine, iter_blocks
from ._usage import UsageTally

#: The event types of this schema; events of others are kept as raw data.
KNOWN_TYPES = frozenset(TRACE_EVENT_TYPES)

END_STATUS = {"node_success": "success", "node_failure": "failed", "node_skipped": "skipped"}
_TALLIED = {"node_success": COMPLETED, "node_failure": FAILED, "node_skipped": SKIPPED}
_NODE_EVENTS = frozenset(("node_start", *END_STATUS))
_NO_INDEX = -(2**63)
#: No parent: a top-level node.
NO_PARENT = -1
#: The tally's entry of a node it has not counted yet.
ABSENT = -1


class NodeSink(Protocol):
    """What an output keeps of the attempts, retries and notes of a run, as they come."""

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        """An attempt of the node numbered ``slot`` (in order of first appearance): ended
        with ``line``, or still ``running`` at the end of the trace (``end`` and ``line``
        None)."""

    def retry(self, slot: int, line: TraceLine) -> None: ...

    def note(self, line: TraceLine) -> None: ...

    def usage(self, slot: int | None, line: TraceLine, during: bool) -> None:
        """A ``usage`` line of the node numbered ``slot`` (None: of the run, or of a node
        with no other event so far); ``during`` when an attempt of that node is open."""

    def close(self, facts: RunFacts) -> None:
        """The trace has been read: these are the run's facts."""


class AttemptsOnly:
    """The part of a NodeSink that an output keeping only the attempts leaves as it is:
    retries, notes, usage lines and the close change nothing of it."""

    __slots__ = ()

    def retry(self, slot: int, line: TraceLine) -> None:
        pass

    def note(self, line: TraceLine) -> None:
        pass

    def usage(self, slot: int | None, line: TraceLine, during: bool) -> None:
        pass

    def close(self, facts: RunFacts) -> None:
        pass


S = TypeVar("S", bound=NodeSink)


class SlotEntries:
    """The scan's NodeTally entries, by slot: a list of small ints (8 bytes a node, where a
    dict by node id takes about 30), ABSENT for a node not counted yet. The list itself,
    ``entries``, is what the scan's shorter road reads and writes."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[int] = []

    def get(self, slot: int, /) -> int | None:
        entry = self.entries[slot]
        return None if entry == ABSENT else entry

    def __setitem__(self, slot: int, entry: int, /) -> None:
        self.entries[slot] = entry

    def __contains__(self, slot: object, /) -> bool:
        return isinstance(slot, int) and self.entries[slot] != ABSENT

    def __len__(self) -> int:
        """How many nodes are counted: a count over the list, which NodeTally takes only
        when it has a ``max_nodes`` (the scan's has none)."""
        return len(self.entries) - self.entries.count(ABSENT)


@dataclass(frozen=True, slots=True)
class RunFacts:
    """A run's facts from one pass over its trace (see ``RunRecord`` for what each means).

    ``node_ids`` lists the nodes in order of first appearance (their slots), ``slots``
    maps each back; ``parents`` holds each node's parent's slot (``NO_PARENT`` for a
    top-level node), ``children`` each parent's children's slots in order of start, and
    ``depends`` the upstream node ids of the nodes that name some. ``usage_by_model`` and
    ``node_usage`` total the ``usage`` lines, as the metadata's keys of those names do."""

    workflow_id: str
    run_id: str | None
    status: str
    error: str | None
    total_nodes: int
    started: float | None
    ended: float | None
    node_ids: list[str]
    node_indices: array[int]
    tally: NodeTally[int]
    counts: NodeCounts
    found: FoundRun
    reported_cost_usd: float | None
    seed_format: bool
    torn_line: int | None
    warnings: tuple[str, ...]
    pid: int
    events: int
    skipped_runs: int
    slots: dict[str, int]
    parents: array[int]
    children: dict[int, list[int]]
    depends: dict[int, tuple[str, ...]]
    usage_by_model: dict[str, dict[str, float]]
    node_usage: dict[str, dict[str, float]]
    usage_cost_usd: float

    def node_index(self, slot: int) -> int | None:
        index = self.node_indices[slot]
        return None if index == _NO_INDEX else index

    def node_status(self, slot: int) -> str:
        return self.tally.status(slot) or "pending"

    def parent_slot(self, slot: int) -> int | None:
        parent = self.parents[slot]
        return None if parent == NO_PARENT else parent

    def parent_id(self, slot: int) -> str | None:
        parent = self.parents[slot]
        return None if parent == NO_PARENT else self.node_ids[parent]

    def children_of(self, slot: int) -> list[str]:
        """The ids of the node's children, in order of start."""
        return [self.node_ids[child] for child in self.children.get(slot, ())]

    def depends_on(self, slot: int) -> tuple[str, ...]:
        return self.depends.get(slot, ())

    def upstream_slots(self, slot: int) -> list[int]:
        """The slots of the nodes this one depends on (ids that name no node left out)."""
        found = (self.slots.get(node_id) for node_id in self.depends.get(slot, ()))
        return [upstream for upstream in found if upstream is not None]

    @property
    def ok(self) -> bool:
        return self.status == "complete" and not self.counts.nodes_failed

    @property
    def trace_file(self) -> Path:
        return self.found.trace_file

    @property
    def metadata_file(self) -> Path | None:
        return self.found.metadata_file

    @property
    def wall_seconds(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)


class RunScan(Generic[S]):
    """Feeds a run's lines, in trace order, to a fresh ``make_sink()``; a later
    ``workflow_start`` begins the run again, with a new sink (the last run is the one read)."""

    def __init__(self, make_sink: Callable[[], S]) -> None:
        self._make_sink = make_sink
        self.runs = 0
        self.last_start_stamp: Any = "?"
        self._begin()

    def _begin(self) -> None:
        self.sink = self._make_sink()
        self.slots: dict[str, int] = {}
        self.indices: array[int] = array("q")
        self.parents: array[int] = array("q")
        self.children: dict[int, list[int]] = {}
        self.depends: dict[int, tuple[str, ...]] = {}
        self.usage = UsageTally()
        #: the start of each node's earliest attempt still open, and of its later ones
        self.open: dict[str, float] = {}
        self.more_open: dict[str, deque[float]] = {}
        self.entries = SlotEntries()
        self.tally: NodeTally[int] = NodeTally(table=self.entries)
        self.start: TraceLine | None = None
        self.end: TraceLine | None = None
        self.first_line: TraceLine | None = None
        self.error: str | None = None
        self.first: float | None = None
        self.last: float | None = None
        self.earliest_start: float | None = None
        self.latest_end: float | None = None
        self.untimed = 0
        self.events = 0
        self.has_run_id = False
        self.unknown: set[str] = set()
        self.unencoded: list[str] = []

    def add_all(self, lines: Iterable[TraceLine]) -> None:
        """``add`` each line; the node events of a run under way take a shorter road (the
        same steps, with the scan's state held in locals, and a node's first attempt
        counted as the tally's ``start`` and ``end`` would count it)."""
        events, first, last, has_run_id = self.events, self.first, self.last, self.has_run_id
        earliest, latest = self.earliest_start, self.latest_end
        slots, opened, more_open, tally = self.slots, self.open, self.more_open, self.tally
        indices, parents, attempt, ended = (
            self.indices,
            self.parents,
            self.sink.attempt,
            self._ended,
        )
        table = self.entries.entries
        began = succeeded = 0  # first attempts started and succeeded, not yet in the tally
        for line in lines:
            kind = line.event_type
            epoch = line.epoch_seconds
            node_id = line.node_id
            if kind not in _NODE_EVENTS or node_id is None or epoch is None or first is None:
                tally.unfinished += began - succeeded
                tally.completed += succeeded
                began = succeeded = 0
                self.events, self.first, self.last = events, first, last
                self.has_run_id, self.earliest_start, self.latest_end = has_run_id, earliest, latest
                self.add(line)  # which may begin the run again: its state is new
                events, first, last = self.events, self.first, self.last
                has_run_id, earliest, latest = self.has_run_id, self.earliest_start, self.latest_end
                slots, opened, more_open, tally = self.slots, self.open, self.more_open, self.tally
                indices, parents = self.indices, self.parents
                attempt, table = self.sink.attempt, self.entries.entries
                continue
            events += 1
            if epoch >= last:  # type: ignore[operator]  # last is set once first is
                last = epoch
            elif epoch < first:
                first = epoch
            if not has_run_id and line.run_id is not msgspec.UNSET:
                has_run_id = True
            index = line.node_index
            slot = slots.get(node_id)
            if kind == "node_start":
                if slot is None:
                    slots[node_id] = slot = len(slots)
                    indices.append(_NO_INDEX if index is None else index)
                    parents.append(NO_PARENT)
                    table.append(ABSENT)
                elif index is not None:
                    indices[slot] = index
                if node_id in opened:
                    more_open.setdefault(node_id, deque()).append(epoch)
                else:
                    opened[node_id] = epoch
                if table[slot] == ABSENT:
                    table[slot] = OPEN
                    began += 1
                else:
                    tally.start(slot)
                if line.parent_id is not None or line.depends_on:
                    self._place(node_id, line)
                continue
            if slot is None or more_open:
                self.earliest_start, self.latest_end = earliest, latest
                tally.unfinished += began - succeeded
                tally.completed += succeeded
                began = succeeded = 0
                ended(node_id, kind, line, epoch)
                earliest, latest = self.earliest_start, self.latest_end
                continue
            if index is not None:
                indices[slot] = index
            start = opened.pop(node_id, None)
            if start is None:  # no earlier than the epoch: a duration as long as 10**15 s is valid
                duration = line.duration_seconds
                start = (
                    max(0.0, epoch - duration) if duration is not None and duration > 0 else epoch
                )
            elif start > epoch:
                start = epoch
            if earliest is None or start < earliest:
                earliest = start
            if latest is None or epoch > latest:
                latest = epoch
            attempt(slot, node_id, END_STATUS[kind], start, epoch, line)
            if kind == "node_success" and table[slot] == OPEN:
                table[slot] = COMPLETED
                succeeded += 1
            else:
                tally.end(slot, _TALLIED[kind])
        tally.unfinished += began - succeeded
        tally.completed += succeeded
        self.events, self.first, self.last, self.has_run_id = events, first, last, has_run_id
        self.earliest_start, self.latest_end = earliest, latest

    def add(self, line: TraceLine) -> None:
        kind = line.event_type
        if kind == "workflow_start":
            self.runs += 1
            self.last_start_stamp = line.timestamp if line.timestamp is not None else "?"
            if self.runs > 1:
                self._begin()
            if self.start is None:
                self.start = line
        if self.first_line is None:
            self.first_line = line
        self.events += 1
        epoch = line.epoch_seconds
        if epoch is None:
            self.untimed += 1
            epoch = self.last if self.last is not None else 0.0
        elif self.last is None or self.first is None:
            self.first = self.last = epoch
        elif epoch >= self.last:
            self.last = epoch
        elif epoch < self.first:
            self.first = epoch
        if line.run_id is not msgspec.UNSET:
            self.has_run_id = True
        node_id = line.node_id
        if kind == "node_start":
            if node_id is not None:
                slot = self._slot(node_id, line.node_index)
                if node_id in self.open:
                    self.more_open.setdefault(node_id, deque()).append(epoch)
                else:
                    self.open[node_id] = epoch
                self.tally.start(slot)
                if line.parent_id is not None or line.depends_on:
                    self._place(node_id, line)
        elif kind in END_STATUS:
            if node_id is not None:
                self._ended(node_id, kind, line, epoch)
        elif kind == "note":
            self.sink.note(line)
        elif kind == "usage":
            self.usage.add(line)
            noted = self.slots.get(node_id) if node_id is not None else None
            self.sink.usage(noted, line, node_id in self.open)
        elif kind == "node_retry":
            if node_id is not None:
                slot = self._slot(node_id, line.node_index)
                self.sink.retry(slot, line)
                self.tally.retry(slot)
        elif kind == "workflow_error":
            self.error = line.error or "workflow error"
            self.end = line
        elif kind == "workflow_complete":
            if self.error is None:
                self.end = line
        elif kind == "encode_error":
            self.unencoded.append(str(line.failed_event_type))
        elif kind not in KNOWN_TYPES:
            self.unknown.add(str(kind))

    def _slot(self, node_id: str, index: int | None) -> int:
        slot = self.slots.get(node_id)
        if slot is None:
            slot = self.slots[node_id] = len(self.slots)
            self.indices.append(_NO_INDEX if index is None else index)
            self.parents.append(NO_PARENT)
            self.entries.entries.append(ABSENT)
        elif index is not None:
            self.indices[slot] = index
        return slot

    def _place(self, node_id: str, line: TraceLine) -> None:
        """Record a node's parent and upstream nodes, from its first start naming them."""
        slot = self.slots[node_id]
        parent_id = line.parent_id
        if parent_id is not None and parent_id != node_id and self.parents[slot] == NO_PARENT:
            parent = self._slot(parent_id, None)
            # only a node that is a parent already can be an ancestor of its parent-to-be
            if slot not in self.children or not self._descends(parent, slot):
                self.parents[slot] = parent
                self.children.setdefault(parent, []).append(slot)
        if line.depends_on and slot not in self.depends:
            self.depends[slot] = tuple(line.depends_on)

    def _descends(self, slot: int, ancestor: int) -> bool:
        while slot != NO_PARENT:
            if slot == ancestor:
                return True
            slot = self.parents[slot]
        return False

    def _ended(self, node_id: str, kind: str, line: TraceLine, end: float) -> None:
        slot = self.slots.get(node_id)
        index = line.node_index
        if slot is None:
            slot = self._slot(node_id, index)
        elif index is not None:
            self.indices[slot] = index
        start = self.open.pop(node_id, None)
        if start is None:  # no earlier than the epoch: a duration as long as 10**15 s is valid
            duration = line.duration_seconds
            start = max(0.0, end - duration) if duration is not None and duration > 0 else end
        elif node_id in self.more_open:
            waiting = self.more_open[node_id]
            self.open[node_id] = waiting.popleft()
            if not waiting:
                del self.more_open[node_id]
        if start > end:
            start = end
        if self.earliest_start is None or start < self.earliest_start:
            self.earliest_start = start
        if self.latest_end is None or end > self.latest_end:
            self.latest_end = end
        self.sink.attempt(slot, node_id, END_STATUS[kind], start, end, line)
        self.tally.end(slot, _TALLIED[kind])

    def finish(self, found: FoundRun, torn_line: int | None = None) -> RunFacts:
        """The run's facts; the sink is told of the attempts still running."""
        notes = list(found.warnings)
        if torn_line is not None:
            notes.append(
                f"{found.trace_file}:{torn_line}: torn last line ignored "
                "(the writer was stopped in the middle of it)"
            )
        if self.runs > 1:
            notes.append(
                f"the trace holds {self.runs} runs; reading the last one "
                f"(started {self.last_start_stamp})"
            )
        unknown = sorted(self.unknown)
        if unknown:
            notes.append(f"events of unknown types kept as raw data: {', '.join(unknown)}")
        if self.unencoded:
            kinds = sorted(set(self.unencoded))
            notes.append(
                f"{len(self.unencoded)} event(s) could not be encoded by the writer and are "
                f"encode_error records in the trace ({', '.join(kinds)})"
            )
        if self.untimed:
            notes.append(f"{self.untimed} event(s) without a numeric epoch_seconds")
        metadata: Mapping[str, Any] = found.metadata or {}
        for key, what in (
            ("events_dropped", "dropped by the producer's overflow policy"),
            ("events_lost", "lost by the writer"),
        ):
            count = metadata.get(key)
            if isinstance(count, int) and count > 0:
                notes.append(f"{count} event(s) {what}: the trace is not the whole run")
        started = self.start.epoch_seconds if self.start is not None else None
        started = _least(self.earliest_start, started if started is not None else self.first)
        ended = self.end.epoch_seconds if self.end is not None else None
        ended = _most(self.latest_end, ended if ended is not None else self.last)
        for node_id in sorted(self.open, key=self.slots.__getitem__):
            for start in (self.open[node_id], *self.more_open.get(node_id, ())):
                started = _least(started, start)
                self.sink.attempt(self.slots[node_id], node_id, "running", start, None, None)
        first = self.start or self.first_line
        total = self.start.total_nodes if self.start is not None else None
        if total is None:
            total = _int(metadata.get("total_nodes"))
        reported = None
        if self.end is not None and self.end.event_type == "workflow_complete":
            reported = self.end.cumulative_cost_usd
        status = "incomplete"
        if self.end is not None:
            status = "error" if self.error is not None else "complete"
        pid = self.first_line.pid if self.first_line is not None else None
        facts = RunFacts(
            workflow_id=(first.workflow_id if first else None)
            or _text(metadata.get("workflow_id"))
            or "",
            run_id=(_run_id(first) if first else None) or _text(metadata.get("run_id")),
            status=status,
            error=self.error,
            total_nodes=max(total or 0, len(self.slots)),
            started=started,
            ended=ended,
            node_ids=list(self.slots),
            node_indices=self.indices,
            tally=self.tally,
            counts=self.tally.counts(),
            found=found,
            reported_cost_usd=reported,
            seed_format=self.events > 0 and not self.has_run_id,
            torn_line=torn_line,
            warnings=tuple(notes),
            pid=pid if pid is not None else 1,
            events=self.events,
            skipped_runs=max(0, self.runs - 1),
            slots=self.slots,
            parents=self.parents,
            children=self.children,
            depends=self.depends,
            usage_by_model=self.usage.by_model,
            node_usage=self.usage.by_node,
            usage_cost_usd=self.usage.cost_usd,
        )
        self.sink.close(facts)
        return facts


class Meter(Protocol):
    """A progress bar: told of each block's bytes, closed at the end (tqdm is one)."""

    def update(self, n: float = 1) -> object: ...

    def close(self) -> None: ...


#: Given the trace about to be read, a Meter for the reading, or None for no progress shown.
Progress = Callable[[Path], Meter | None]


def scan_run(
    path: str | os.PathLike[str], make_sink: Callable[[], S], progress: Progress | None = None
) -> tuple[RunFacts, S]:
    """Read a run (see ``read_run`` for ``path`` and what it raises) in one pass."""
    found = _without_tables(find_run(path))
    torn: list[int] = []
    scan = RunScan(make_sink)
    meter = progress(found.trace_file) if progress is not None else None
    try:
        on_bytes = meter.update if meter is not None else None
        for block in iter_blocks(found.trace_file, lambda n, _raw: torn.append(n), on_bytes):
            scan.add_all(block)
    finally:
        if meter is not None:
            meter.close()
    facts = scan.finish(found, torn_line=torn[0] if torn else None)
    return facts, scan.sink


def _without_tables(found: FoundRun) -> FoundRun:
    """``found`` with its metadata's figures only: the scan reads a few of them, never its
    per-node tables (times and costs of up to 100,000 nodes, tens of MiB decoded)."""
    if found.metadata is None:
        return found
    figures = {k: v for k, v in found.metadata.items() if not isinstance(v, dict | list)}
    return dataclasses.replace(found, metadata=figures)


def _run_id(line: TraceLine) -> str | None:
    return line.run_id if isinstance(line.run_id, str) else None


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _most(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
