"""Lanes: node attempts placed on rows so that no two on a row overlap.

Times are whole microseconds from the run's start, so what the exports write is exactly what
was checked for overlap. Each attempt takes the lowest free lane when it starts (interval
partitioning), so the number of lanes is the peak number of attempts in flight.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ._record import NodeAttempt, NodeRecord, RunRecord


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt on the timeline: lane, and [start_us, end_us) from the run's start."""

    node: NodeRecord
    attempt: NodeAttempt
    lane: int
    start_us: int
    end_us: int

    @property
    def status(self) -> str:
        return self.attempt.status


@dataclass(frozen=True, slots=True)
class Lanes:
    bars: tuple[Bar, ...]
    count: int
    origin: float
    span_us: int

    def offset_us(self, epoch: float) -> int:
        """Microseconds from the run's start to ``epoch``, clamped into the run."""
        return min(self.span_us, max(0, _us(epoch) - _us(self.origin)))


def lay_out(run: RunRecord) -> Lanes:
    """Place every attempt of ``run`` on a lane; bars come out sorted by start."""
    origin = run.started if run.started is not None else 0.0
    end_of_run = run.ended if run.ended is not None else origin
    base = _us(origin)
    span = max(0, _us(end_of_run) - base)
    placed: list[tuple[int, int, int, NodeRecord, NodeAttempt]] = []
    for order, node in enumerate(run.nodes):
        for attempt in node.attempts:
            start = max(0, _us(attempt.start) - base)
            end = _us(attempt.end if attempt.end is not None else end_of_run) - base
            placed.append((start, max(start, end), order, node, attempt))
    placed.sort(key=lambda item: (item[0], item[1], item[2], item[4].number))
    busy: list[tuple[int, int]] = []
    free: list[int] = []
    bars: list[Bar] = []
    count = 0
    for start, end, _order, node, attempt in placed:
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane = count
            count += 1
        heapq.heappush(busy, (end, lane))
        bars.append(Bar(node, attempt, lane, start, end))
        span = max(span, end)
    return Lanes(tuple(bars), count, origin, span)


def _us(epoch: float) -> int:
    return round(epoch * 1_000_000)
