"""Where a run's time went along its structure: each top-level node with its children, and
the critical path (defined in docs/reading-runs.md).

A node's span runs from the start of its first attempt to the end of its last (an attempt
still running ends with the run); a node without attempts of its own (a parent that never
ran) spans its children. A node's subtree span is its span joined with those of all its
descendants.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ._scan import NO_PARENT

TOP = 10
_NONE = math.nan


@dataclass(frozen=True, slots=True)
class Shape:
    """A run's nesting and dependencies, by slot: each node's parent's slot (``NO_PARENT``
    at the top), each parent's children in order of start, and each node's upstream
    nodes' slots (``upstream``)."""

    parents: Sequence[int]
    children: Mapping[int, Sequence[int]]
    upstream: Callable[[int], Sequence[int]]
    has_dependencies: bool

    @property
    def nested(self) -> bool:
        return bool(self.children)


@dataclass(frozen=True, slots=True)
class Spans:
    """Each node's span (NaN where it has none) and its subtree's, in epoch seconds."""

    start: array[float]
    end: array[float]
    tree_start: array[float]
    tree_end: array[float]
    #: each node's own summed attempt time plus its descendants', and how many they are
    tree_seconds: array[float]
    tree_nodes: array[int]


def spans_of(
    shape: Shape,
    first_start: Sequence[float],
    last_end: Sequence[float],
    seconds: Sequence[float],
    nodes: int,
) -> Spans:
    """The spans, from each node's first attempt start and last attempt end (NaN: none),
    arrays of ``nodes`` items (without nesting, a subtree is its node: the same arrays)."""
    if (
        not shape.nested
        and isinstance(first_start, array)
        and isinstance(last_end, array)
        and len(first_start) == len(last_end) == nodes
    ):  # each node is its own subtree: the same arrays, not copies (no subtree figures)
        return Spans(first_start, last_end, first_start, last_end, array("d"), array("q"))
    start = array("d", first_start[:nodes])
    end = array("d", last_end[:nodes])
    tree_start, tree_end = array("d", start), array("d", end)
    tree_seconds = array("d", seconds[:nodes])
    tree_nodes = array("q", (1,)) * nodes
    if shape.nested:
        parents = shape.parents
        for slot in reversed(_pre_order(shape, nodes)):  # children before their parents
            parent = parents[slot]
            if parent == NO_PARENT:
                continue
            tree_seconds[parent] += tree_seconds[slot]
            tree_nodes[parent] += tree_nodes[slot]
            low, high = tree_start[slot], tree_end[slot]
            if low == low and not tree_start[parent] <= low:  # NaN compares false
                tree_start[parent] = low
            if high == high and not tree_end[parent] >= high:
                tree_end[parent] = high
        for slot in range(nodes):
            if start[slot] != start[slot]:  # no attempt of its own: its children's span
                start[slot], end[slot] = tree_start[slot], tree_end[slot]
    return Spans(start, end, tree_start, tree_end, tree_seconds, tree_nodes)


def _pre_order(shape: Shape, nodes: int) -> list[int]:
    """Every node, each parent before its children."""
    parents, children = shape.parents, shape.children
    order: list[int] = []
    for root in range(nodes):
        if parents[root] != NO_PARENT:
            continue
        stack = [root]
        while stack:
            slot = stack.pop()
            order.append(slot)
            stack.extend(children.get(slot, ()))
    return order


def top_level(
    shape: Shape, spans: Spans, node_ids: Sequence[str], status_of: Callable[[int], str]
) -> tuple[int, list[dict[str, object]] | None]:
    """How many top-level nodes there are, and the ``TOP`` longest by subtree span (None
    without nesting: every node is top-level, alone)."""
    if not shape.nested:
        return len(node_ids), None
    parents = shape.parents
    roots = [slot for slot in range(len(node_ids)) if parents[slot] == NO_PARENT]
    starts, ends = spans.tree_start, spans.tree_end

    def length(slot: int) -> float:
        low, high = starts[slot], ends[slot]
        return max(0.0, high - low) if low == low and high == high else 0.0

    longest = heapq.nsmallest(TOP, roots, key=lambda slot: (-length(slot), slot))
    return len(roots), [
        {
            "node_id": node_ids[slot],
            "seconds": length(slot),
            "node_seconds": spans.tree_seconds[slot],
            "nodes": spans.tree_nodes[slot],
            "status": status_of(slot),
        }
        for slot in longest
    ]


def critical_path(
    shape: Shape,
    spans: Spans,
    node_ids: Sequence[str],
    status_of: Callable[[int], str],
    origin: float | None,
    wall_seconds: float,
) -> dict[str, object]:
    """The chain of nodes that bounds the run's wall time, by start (a parent before its
    children); its ``seconds`` are the time its nodes cover, each moment counted once."""
    ancestry = {slot: _ancestors(shape, slot) for slot in _chain(shape, spans)}
    chain = sorted(ancestry, key=lambda slot: (spans.start[slot], len(ancestry[slot])))
    base = origin if origin is not None else 0.0
    links = []
    total = 0.0
    reached = -math.inf
    for slot in chain:
        low, high = spans.start[slot], spans.end[slot]
        duration = max(0.0, high - low)
        if high > reached:
            total += high - max(low, reached)
            reached = high
        links.append(
            {
                "node_id": node_ids[slot],
                "path": [node_ids[a] for a in ancestry[slot]],
                "start_seconds": max(0.0, spans.start[slot] - base),
                "duration_seconds": duration,
                "status": status_of(slot),
            }
        )
    return {
        "nodes": links,
        "seconds": total,
        "wall_seconds": wall_seconds,
        "share": total / wall_seconds if wall_seconds > 0 else None,
    }


def _chain(shape: Shape, spans: Spans) -> list[int]:
    start, end = spans.start, spans.end
    parents, children = shape.parents, shape.children

    def later(a: int, b: int | None) -> bool:  # ends later; of equal ends, the first slot
        return b is None or end[a] > end[b] or (end[a] == end[b] and a < b)

    current: int | None = None
    latest = -math.inf
    for slot, ended in enumerate(end):  # the top-level node that ended last
        if ended > latest and parents[slot] == NO_PARENT:  # (NaN, no span: never greater)
            current, latest = slot, ended
    if current is None:
        return []
    chain: list[int] = []
    seen: set[int] = set()
    while current is not None and current not in seen:
        while True:  # into the child that ended last: it bounds its parent's end
            seen.add(current)
            chain.append(current)
            kids = [
                kid
                for kid in children.get(current, ())
                if kid not in seen and start[kid] == start[kid] and end[kid] <= end[current]
            ]
            if not kids:
                break
            current = _last(kids, later)
        step: int | None = None
        holder = current  # what this node, or an enclosing one, waited for
        while holder != NO_PARENT:
            for upstream in shape.upstream(holder):
                if (
                    upstream not in seen
                    and start[upstream] == start[upstream]
                    and end[upstream] <= start[current]
                    and later(upstream, step)
                ):
                    step = upstream
            holder = parents[holder]
        current = step
    return chain


def _last(slots: list[int], later: Callable[[int, int | None], bool]) -> int:
    best: int | None = None
    for slot in slots:
        if later(slot, best):
            best = slot
    assert best is not None
    return best


def _ancestors(shape: Shape, slot: int) -> list[int]:
    """The nodes enclosing ``slot``, outermost first."""
    found: list[int] = []
    parent = shape.parents[slot]
    while parent != NO_PARENT:
        found.append(parent)
        parent = shape.parents[parent]
    found.reverse()
    return found
