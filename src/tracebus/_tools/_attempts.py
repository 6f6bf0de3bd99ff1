"""Every attempt of a run in a few columns, and their lanes: what the exports and the page draw.

An attempt costs some fifty bytes here (numbers in arrays, its output summary as the JSON
bytes it was in the trace), against the kilobyte of a dict per event; texts that
few attempts have (errors, skip reasons) are kept by attempt number. Retries and notes are
kept as their lines. The summary's figures are taken on the way (``figures``).

Each attempt also has its node's parent (``parent``, a slot, ``NO_PARENT`` at the top) and
upstream nodes (``depends_on``, slots, for the attempts whose node names some), filled in
when the trace has been read, and the tokens and cost of the ``usage`` lines of its node
while it ran (``input_tokens``, ``output_tokens``, ``usage_cost``; a line after the node's
last end counts for that last attempt, one before its first start for the first).
"""

from __future__ import annotations

import heapq
import os
from array import array
from dataclasses import dataclass

from ._lines import NULL, TraceLine
from ._scan import NO_PARENT, Progress, RunFacts, scan_run
from ._summary import Figures

STATUS_CODES = ("success", "failed", "skipped", "running")
_CODE = {status: code for code, status in enumerate(STATUS_CODES)}
_NONE = float("nan")


class Packed:
    """Byte strings one after the other in one buffer."""

    __slots__ = ("data", "ends")

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array("Q", (0,))

    def append(self, value: bytes) -> None:
        self.data += value
        self.ends.append(len(self.data))

    def __getitem__(self, index: int) -> bytes:
        return bytes(self.data[self.ends[index] : self.ends[index + 1]])


class AttemptTable:
    """Keeps the attempts of a run as they end (a ``NodeSink``), in arrival order."""

    def __init__(self) -> None:
        self.slot = array("L")
        self.number = array("L")
        self.status = array("B")
        self.start = array("d")
        self.end = array("d")
        self.duration = array("d")
        self.cost = array("d")
        self.hashes: list[str | None] = []
        self.summary = Packed()
        self.errors: dict[int, str] = {}
        self.reasons: dict[int, str] = {}
        self.tries = array("L")
        self.retries: list[tuple[int, TraceLine]] = []
        self.notes: list[TraceLine] = []
        self.figures = Figures()
        self.parent = array("q")
        self.depends_on: dict[int, tuple[int, ...]] = {}
        self.input_tokens = array("q")
        self.output_tokens = array("q")
        self.usage_cost = array("d")
        #: each node's latest attempt (an index), and usage waiting for its next attempt
        self._last = array("q")
        self._pending: dict[int, list[float]] = {}

    def __len__(self) -> int:
        return len(self.slot)

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        self.figures.attempt(slot, node_id, status, start, end, line)
        if slot >= len(self.tries):
            missing = slot + 1 - len(self.tries)
            self.tries.extend(array("L", (0,)) * missing)
            self._last.extend(array("q", (-1,)) * missing)
        self.tries[slot] += 1
        here = len(self.slot)
        self._last[slot] = here
        spent = self._pending.pop(slot, None) if self._pending else None
        if spent is None:
            self.input_tokens.append(0)
            self.output_tokens.append(0)
            self.usage_cost.append(0.0)
        else:
            self.input_tokens.append(int(spent[0]))
            self.output_tokens.append(int(spent[1]))
            self.usage_cost.append(spent[2])
        self.slot.append(slot)
        self.number.append(self.tries[slot])
        self.status.append(_CODE[status])
        self.start.append(start)
        self.end.append(_NONE if end is None else end)
        if line is None:
            self.duration.append(_NONE)
            self.cost.append(0.0)
            self.hashes.append(None)
            self.summary.append(b"null")
            return
        duration = line.duration_seconds
        self.duration.append(_NONE if duration is None else duration)
        self.cost.append(line.cost_usd or 0.0)
        self.hashes.append(line.output_hash)
        self.summary.append(bytes(line.output_summary) if line.output_summary else bytes(NULL))
        if status == "failed" and line.error is not None:
            self.errors[here] = line.error
        elif status == "skipped" and line.reason is not None:
            self.reasons[here] = line.reason

    def retry(self, slot: int, line: TraceLine) -> None:
        self.retries.append((slot, line))

    def note(self, line: TraceLine) -> None:
        self.notes.append(line)

    def usage(self, slot: int | None, line: TraceLine, during: bool) -> None:
        if slot is None:
            return
        tokens_in, tokens_out, cost = line.input_tokens or 0, line.output_tokens or 0, line.cost_usd
        last = self._last[slot] if slot < len(self._last) else -1
        if during or last < 0:
            spent = self._pending.setdefault(slot, [0, 0, 0.0])
            spent[0] += tokens_in
            spent[1] += tokens_out
            spent[2] += cost or 0.0
        else:
            self.input_tokens[last] += tokens_in
            self.output_tokens[last] += tokens_out
            self.usage_cost[last] += cost or 0.0

    def close(self, facts: RunFacts) -> None:
        """Give each attempt its node's parent and upstream nodes, now all are known."""
        parents = facts.parents
        self.parent = array("q", (parents[slot] for slot in self.slot))
        if facts.depends:
            for index, slot in enumerate(self.slot):
                if slot in facts.depends:
                    self.depends_on[index] = tuple(facts.upstream_slots(slot))

    def parent_of(self, index: int) -> int | None:
        """The slot of attempt ``index``'s node's parent, or None for a top-level node."""
        parent = self.parent[index]
        return None if parent == NO_PARENT else parent

    def tries_of(self, slot: int) -> int:
        return self.tries[slot] if slot < len(self.tries) else 0


@dataclass(frozen=True, slots=True)
class Lanes:
    """The attempts placed on lanes so that no two on a lane overlap: ``order`` lists the
    attempts (indices into the table) sorted by start; ``lane``, ``start_us`` and ``end_us``
    are in that order. Times are whole microseconds from the run's start, so what the
    exports write is exactly what was checked for overlap. Each attempt takes the lowest
    free lane when it starts (interval partitioning), so there are as many lanes as
    attempts in flight at the peak. Laid out ``nested``, a child's attempt goes on the
    lane of its parent's attempt, inside it, where it fits (inside that attempt's span, and
    no sibling open there), and only else takes a free lane: a lane then holds attempts
    that are disjoint or nested, never crossing."""

    order: array[int]
    lane: array[int]
    start_us: array[int]
    end_us: array[int]
    count: int
    origin: float
    span_us: int

    def offset_us(self, epoch: float) -> int:
        """Microseconds from the run's start to ``epoch``, clamped into the run."""
        return min(self.span_us, max(0, _us(epoch) - _us(self.origin)))


def lay_out(facts: RunFacts, table: AttemptTable, nested: bool = False) -> Lanes:
    """Place every attempt of the run on a lane (``nested``: children inside parents)."""
    origin = facts.started if facts.started is not None else 0.0
    end_of_run = facts.ended if facts.ended is not None else origin
    base = _us(origin)
    span = max(0, _us(end_of_run) - base)
    starts = array("q")
    ends = array("q")
    for start_epoch, end_epoch in zip(table.start, table.end, strict=True):
        start = max(0, _us(start_epoch) - base)
        end = _us(end_of_run if end_epoch != end_epoch else end_epoch) - base
        starts.append(start)
        ends.append(max(start, end))
    if nested and facts.children:
        return _lay_out_nested(facts, table, starts, ends, origin, span)
    # by start, then end, node and attempt: stable sorts from the last key to the first
    ranked = list(range(len(starts)))
    for key in (table.number, table.slot, ends, starts):
        ranked.sort(key=key.__getitem__)
    order = array("L", ranked)
    del ranked
    busy: list[tuple[int, int]] = []
    free: list[int] = []
    lanes = array("L")
    sorted_starts = array("q")
    sorted_ends = array("q")
    count = 0
    for index in order:
        start, end = starts[index], ends[index]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane = count
            count += 1
        heapq.heappush(busy, (end, lane))
        lanes.append(lane)
        sorted_starts.append(start)
        sorted_ends.append(end)
        if end > span:
            span = end
    return Lanes(order, lanes, sorted_starts, sorted_ends, count, origin, span)


def _lay_out_nested(
    facts: RunFacts,
    table: AttemptTable,
    starts: array[int],
    ends: array[int],
    origin: float,
    span: int,
) -> Lanes:
    depth = _depths(facts)
    slots = table.slot
    # by start, the longer first (a parent before the children it holds), then depth
    ranked = sorted(
        range(len(starts)),
        key=lambda i: (starts[i], -ends[i], depth[slots[i]], slots[i], table.number[i]),
    )
    order = array("L", ranked)
    del ranked
    busy: list[tuple[int, int]] = []  # (end of the lane's outermost attempt, lane)
    free: list[int] = []
    stacks: list[list[tuple[int, int]]] = []  # per lane, the open attempts: (end, position)
    placed: dict[int, tuple[int, int, int]] = {}  # slot -> (start, end, position) of its last
    lanes = array("L")
    sorted_starts = array("q")
    sorted_ends = array("q")
    parents = facts.parents
    for position, index in enumerate(order):
        start, end, slot = starts[index], ends[index], slots[index]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lane = -1
        parent = parents[slot]
        host = placed.get(parent) if parent != NO_PARENT else None
        if host is not None and host[0] <= start and end <= host[1]:
            stack = stacks[lanes[host[2]]]
            while stack and stack[-1][0] <= start and stack[-1][1] != host[2]:
                stack.pop()
            if stack and stack[-1][1] == host[2]:
                lane = lanes[host[2]]
                stack.append((end, position))
        if lane < 0:
            if free:
                lane = heapq.heappop(free)
            else:
                lane = len(stacks)
                stacks.append([])
            stacks[lane][:] = [(end, position)]
            heapq.heappush(busy, (end, lane))
        placed[slot] = (start, end, position)
        lanes.append(lane)
        sorted_starts.append(start)
        sorted_ends.append(end)
        if end > span:
            span = end
    return Lanes(order, lanes, sorted_starts, sorted_ends, len(stacks), origin, span)


def _depths(facts: RunFacts) -> array[int]:
    """How many nodes enclose each node."""
    parents = facts.parents
    depth = array("q", bytes(8 * len(parents)))
    for slot in range(len(parents)):
        parent, steps = parents[slot], 0
        while parent != NO_PARENT:
            steps += 1
            parent = parents[parent]
        depth[slot] = steps
    return depth


def read_attempts(
    path: str | os.PathLike[str], progress: Progress | None = None
) -> tuple[RunFacts, AttemptTable]:
    """A run's facts and its attempts, in one pass (see ``read_run``)."""
    return scan_run(path, AttemptTable, progress)


def _us(epoch: float) -> int:
    return round(epoch * 1_000_000)
