"""The figures of a run at a glance, as a dict (``--json``) and as plain text."""

from __future__ import annotations

import heapq
import os
from array import array
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from operator import le, neg
from pathlib import Path
from typing import Any, Protocol

from .._counts import NodeCounts
from .._text import one_line, printable
from ._lines import TraceLine
from ._paths import Shape, critical_path, spans_of, top_level
from ._record import RunRecord
from ._scan import NO_PARENT, AttemptsOnly, Progress, RunFacts, scan_run
from ._usage import TOKEN_KEYS

TOP = 10


class RunHead(Protocol):
    """What the summary needs of a run beside its attempts: a RunRecord, or RunFacts."""

    @property
    def workflow_id(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    @property
    def seed_format(self) -> bool: ...
    @property
    def trace_file(self) -> Path: ...
    @property
    def metadata_file(self) -> Path | None: ...
    @property
    def total_nodes(self) -> int: ...
    @property
    def counts(self) -> NodeCounts: ...
    @property
    def started(self) -> float | None: ...
    @property
    def ended(self) -> float | None: ...
    @property
    def wall_seconds(self) -> float: ...
    @property
    def reported_cost_usd(self) -> float | None: ...
    @property
    def warnings(self) -> tuple[str, ...]: ...
    @property
    def usage_by_model(self) -> Mapping[str, Mapping[str, float]]: ...
    @property
    def usage_cost_usd(self) -> float: ...


def summarize(run: RunRecord) -> dict[str, Any]:
    """Status, node counts, times, parallelism, cost, the costliest and slowest nodes,
    failures and warnings, as plain JSON-ready data."""
    figures = Figures()
    for slot, node in enumerate(run.nodes):
        for attempt in node.attempts:
            figures.add(
                slot,
                attempt.start,
                attempt.end,
                attempt.duration_seconds,
                attempt.cost_usd,
                attempt.error,
                attempt.status == "failed",
            )
    nodes = run.nodes
    slots = {node.node_id: slot for slot, node in enumerate(nodes)}
    parents = array("q", (NO_PARENT if n.parent_id is None else slots[n.parent_id] for n in nodes))
    children = {slot: [slots[c] for c in n.children] for slot, n in enumerate(nodes) if n.children}
    upstream = {
        slot: [slots[u] for u in n.depends_on if u in slots]
        for slot, n in enumerate(nodes)
        if n.depends_on
    }
    shape = Shape(parents, children, lambda slot: upstream.get(slot, ()), bool(upstream))
    node_usage = {}
    for node in nodes:
        if node.usage_by_model:
            node_usage[node.node_id] = {
                key: sum(u[key] for u in node.usage_by_model.values()) for key in TOKEN_KEYS
            }
    return figures.summary(
        run, [n.node_id for n in nodes], lambda slot: nodes[slot].status, None, shape, node_usage
    )


def _shape_of(facts: RunFacts) -> Shape:
    return Shape(facts.parents, facts.children, facts.upstream_slots, bool(facts.depends))


def summarize_trace(
    path: str | os.PathLike[str], progress: Progress | None = None
) -> tuple[dict[str, Any], bool]:
    """``summarize(read_run(path))`` in one pass, keeping only what the figures need; and
    whether the run is ok."""
    facts, figures = scan_run(path, Figures, progress)
    return figures.summary(facts, facts.node_ids, facts.node_status), facts.ok


class Figures(AttemptsOnly):
    """The summary's figures of a run's attempts, fed as they end: per node (by slot) its
    summed time and cost, its first start and last end, and its last attempt's error; every
    attempt of a node that has more than one (the spans of the others, for the peak in
    flight, are their nodes')."""

    def __init__(self) -> None:
        self.seconds: array[float] = array("d")
        self.cost: array[float] = array("d")
        self.errors: dict[int, str] = {}
        self.failed: set[int] = set()
        #: (start, seconds, cost, end or NaN) of every attempt of a node that has more than
        #: one, and the start of its last attempt by start
        self.several: dict[int, list[tuple[float, float, float, float]]] = {}
        self.last_start: dict[int, float] = {}
        #: each node's first attempt start (NaN: none yet) and last attempt end (NaN: none)
        self.first_start: array[float] = array("d")
        self.last_end: array[float] = array("d")
        self.running: set[int] = set()
        self.attempts = 0

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        if line is None:
            self.add(slot, start, None, None, 0.0, None, False)
        else:
            failed = status == "failed"
            error = line.error if failed else None
            self.add(slot, start, end, line.duration_seconds, line.cost_usd or 0.0, error, failed)

    def add(
        self,
        slot: int,
        start: float,
        end: float | None,
        duration: float | None,
        cost: float,
        error: str | None,
        failed: bool,
    ) -> None:
        if failed:
            self.failed.add(slot)
        if duration is not None:
            seconds = duration if duration > 0.0 else 0.0
        elif end is not None:
            seconds = end - start
        else:
            seconds = 0.0
        self.attempts += 1
        if slot >= len(self.seconds):
            self._grow(max(slot + 1, len(self.seconds) + (len(self.seconds) >> 3) + 1024))
        first = self.first_start[slot]
        if first != first:  # NaN: the node's first attempt, the common case, in short
            self.seconds[slot] = seconds
            self.cost[slot] = cost
            self.first_start[slot] = start
            if error is not None:
                self.errors[slot] = error
            if end is None:
                self.running.add(slot)
            else:
                self.last_end[slot] = end
            return
        several = self.several.get(slot)
        if several is None:
            several = self.several[slot] = [
                (first, self.seconds[slot], self.cost[slot], self.last_end[slot])
            ]
            self.last_start[slot] = first
        several.append((start, seconds, cost, end if end is not None else _RUNNING))
        self.seconds[slot] += seconds
        self.cost[slot] += cost
        if start >= self.last_start[slot]:  # the last by start is the node's last attempt
            self.last_start[slot] = start
            if error is not None:
                self.errors[slot] = error
            else:
                self.errors.pop(slot, None)
        if not first <= start:
            self.first_start[slot] = start
        if end is None:
            self.running.add(slot)
        elif not self.last_end[slot] >= end:
            self.last_end[slot] = end

    def tries(self, slot: int) -> int:
        """How many attempts the node made."""
        several = self.several.get(slot)
        if several is not None:
            return len(several)
        first = self.first_start[slot]
        return 1 if first == first else 0

    def _grow(self, size: int) -> None:
        missing = size - len(self.seconds)
        if missing > 0:
            self.seconds.extend(_ZEROS * missing)
            self.cost.extend(_ZEROS * missing)
            self.first_start.extend(_NANS * missing)
            self.last_end.extend(_NANS * missing)

    def _spans(self) -> Iterator[tuple[float, float]]:
        """Every attempt's start and end (NaN: running), in no order."""
        several = self.several
        for slot, (start, end) in enumerate(zip(self.first_start, self.last_end, strict=True)):
            if start == start and slot not in several:
                yield start, end
        for attempts in several.values():
            for start, _, _, end in attempts:
                yield start, end

    def peak_in_flight(self, started: float | None, ended: float | None) -> int:
        """The most attempts in flight at once: the lanes ``lay_out`` would use (at equal
        times, ends go first, then empty attempts, then the others' starts)."""
        origin = started if started is not None else 0.0
        base = _us(origin)
        end_of_run = _us(ended if ended is not None else origin) - base
        opens, closes, empties = array("q"), array("q"), array("q")
        for start_epoch, end_epoch in self._spans():
            start = round(start_epoch * 1_000_000) - base
            if start < 0:
                start = 0
            end = end_of_run if end_epoch != end_epoch else round(end_epoch * 1_000_000) - base
            if end > start:
                opens.append(start)
                closes.append(end)
            else:
                empties.append(start)
        opens, closes, empties = _sorted(opens), _sorted(closes), _sorted(empties)
        peak = ended_by = 0  # ended_by: the attempts ended by the time looked at
        last = len(closes)
        for started_by, start in enumerate(opens, 1):  # in flight just after this start
            while ended_by < last and closes[ended_by] <= start:
                ended_by += 1
            if started_by - ended_by > peak:
                peak = started_by - ended_by
        ended_by = started_by = 0
        for start in empties:  # in flight then, and this one
            while ended_by < last and closes[ended_by] <= start:
                ended_by += 1
            while started_by < last and opens[started_by] < start:
                started_by += 1
            if started_by - ended_by + 1 > peak:
                peak = started_by - ended_by + 1
        return peak

    def _settle(self, nodes: int) -> None:
        """Each node's time and cost summed over its attempts in order of start."""
        self._grow(nodes)
        for column in (self.seconds, self.cost, self.first_start, self.last_end):
            del column[nodes:]
        for slot, several in self.several.items():
            several.sort(key=lambda attempt: attempt[0])
            self.seconds[slot] = sum(attempt[1] for attempt in several)
            self.cost[slot] = sum(attempt[2] for attempt in several)

    def cost_usd(self, run: RunHead, nodes: int) -> float | None:
        """The cost reported at completion, else the sum of the nodes' costs; None (unknown)
        for a run that did not complete and reported no cost at all, as its metadata says."""
        self._settle(nodes)
        cost = run.reported_cost_usd
        if cost is None:
            costs = [c for c in self.cost if c]
            if run.usage_cost_usd:
                costs.append(run.usage_cost_usd)
            cost = None if run.status != "complete" and not costs else sum(costs, 0.0)
        return cost

    def summary(
        self,
        run: RunHead,
        node_ids: list[str],
        status_of: Callable[[int], str],
        peak_in_flight: int | None = None,
        shape: Shape | None = None,
        node_usage: Mapping[str, Mapping[str, float]] | None = None,
    ) -> dict[str, Any]:
        """The figures; ``peak_in_flight`` when the caller has laid the attempts out;
        ``shape`` and ``node_usage`` (by node id) unless ``run`` is the RunFacts."""
        if shape is None or node_usage is None:
            assert isinstance(run, RunFacts)
            shape = _shape_of(run)
            node_usage = run.node_usage
        cost = self.cost_usd(run, len(node_ids))
        if peak_in_flight is None:
            peak_in_flight = self.peak_in_flight(run.started, run.ended)
        counts = run.counts
        node_seconds: float = sum(self.seconds) if self.attempts else 0
        wall = run.wall_seconds
        costly = heapq.nsmallest(TOP, zip(map(neg, self.cost), node_ids, strict=True))
        slow = heapq.nsmallest(
            TOP, zip(map(neg, self.seconds), node_ids, range(len(node_ids)), strict=True)
        )
        return {
            "workflow_id": run.workflow_id,
            "run_id": run.run_id,
            "status": run.status,
            "ok": run.ok,
            "error": run.error,
            "format": "seed" if run.seed_format else "tracebus",
            "trace_file": str(run.trace_file),
            "metadata_file": str(run.metadata_file) if run.metadata_file else None,
            "total_nodes": run.total_nodes,
            "nodes_succeeded": counts.nodes_completed,  # this key's first name, kept
            **counts._asdict(),
            "wall_seconds": wall,
            "node_seconds": node_seconds,
            "parallelism": node_seconds / wall if wall > 0 else None,
            "peak_in_flight": peak_in_flight,
            "cost_usd": cost,
            "costliest": [
                {"node_id": node_id, "cost_usd": -negative}
                for negative, node_id in costly
                if negative < 0
            ],
            "slowest": [
                {
                    "node_id": node_id,
                    "duration_seconds": -negative if self.tries(slot) else 0,
                    "status": status_of(slot),
                }
                for negative, node_id, slot in slow
            ],
            "failures": [
                {
                    "node_id": node_ids[slot],
                    "error": self.errors.get(slot),
                    "attempts": self.tries(slot),
                }
                for slot in sorted(self.failed)
                if status_of(slot) == "failed"
            ],
            **_usage_figures(run.usage_by_model, node_usage, node_ids),
            **self._time_figures(run, shape, node_ids, status_of),
            "warnings": list(run.warnings),
        }

    def _time_figures(
        self, run: RunHead, shape: Shape, node_ids: list[str], status_of: Callable[[int], str]
    ) -> dict[str, Any]:
        nodes = len(node_ids)
        if self.running:
            for slot in self.running:
                at = run.ended if run.ended is not None else self.first_start[slot]
                if not self.last_end[slot] >= at:
                    self.last_end[slot] = at
        spans = spans_of(shape, self.first_start, self.last_end, self.seconds, nodes)
        count, longest = top_level(shape, spans, node_ids, status_of)
        path = critical_path(shape, spans, node_ids, status_of, run.started, run.wall_seconds)
        return {
            "nested": shape.nested,
            "has_dependencies": shape.has_dependencies,
            "top_level_nodes": count,
            "top_level": longest,
            "critical_path": path,
        }


def _usage_figures(
    by_model: Mapping[str, Mapping[str, float]],
    node_usage: Mapping[str, Mapping[str, float]],
    node_ids: list[str],
) -> dict[str, Any]:
    """Tokens and cost per model and in all, and the nodes that spent the most tokens."""
    totals: dict[str, float] = {"calls": 0, "input_tokens": 0, "output_tokens": 0}
    totals["cost_usd"] = 0.0
    for model in by_model.values():
        for key in totals:
            totals[key] += model.get(key, 0)
    ranked = []
    if node_usage:
        for slot, node_id in enumerate(node_ids):
            spent = node_usage.get(node_id)
            if spent is not None:
                ranked.append((-(spent["input_tokens"] + spent["output_tokens"]), slot, spent))
    return {
        "usage_by_model": {model: dict(figures) for model, figures in by_model.items()},
        "tokens": totals,
        "most_tokens": [
            {
                "node_id": node_ids[slot],
                **{key: spent[key] for key in TOKEN_KEYS},
            }
            for _, slot, spent in heapq.nsmallest(TOP, ranked, key=lambda r: r[:2])
        ],
    }


_RUNNING = float("nan")
_ZEROS = array("d", (0.0,))
_NANS = array("d", (float("nan"),))


def _sorted(column: array[int]) -> array[int]:
    """``column`` in order, copied through a list only when it is not in order already."""
    if all(map(le, column, islice(column, 1, None))):
        return column
    return array("q", sorted(column))


def _us(epoch: float) -> int:
    return round(epoch * 1_000_000)


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned plain text: no colour, no box drawing, readable when piped.
    A figure the summary leaves out (``--totals``) has no row."""
    s = summary
    status = s["status"]
    if s["nodes_failed"]:
        status += f" ({s['nodes_failed']} failed node{'s' if s['nodes_failed'] != 1 else ''})"
    lines = [f"{s['workflow_id'] or '(unnamed workflow)'}  run {s['run_id'] or '-'}"]
    rows = [
        ("status", status),
        ("error", s["error"]) if s["error"] else None,
        (
            "nodes",
            f"{s['nodes_completed']} completed, {s['nodes_failed']} failed, "
            f"{s['nodes_skipped']} skipped, {s['nodes_unfinished']} unfinished "
            f"of {s['total_nodes']}",
        ),
        (
            "attempts",
            f"{s['attempts_failed']} failed, {s['retries']} retries "
            f"({s['nodes_retried']} node{'s' if s['nodes_retried'] != 1 else ''} retried)",
        ),
        ("wall time", format_seconds(s["wall_seconds"])) if "wall_seconds" in s else None,
        ("node time", f"{format_seconds(s['node_seconds'])} summed")
        if s.get("node_seconds") is not None
        else None,
        (
            "parallelism",
            f"{s['parallelism']:.2f}x achieved" if s["parallelism"] is not None else "-",
        )
        if "parallelism" in s
        else None,
        ("peak in flight", str(s["peak_in_flight"])) if "peak_in_flight" in s else None,
        ("cost", _usd(s["cost_usd"])),
        ("tokens", _tokens(s["tokens"], len(s["usage_by_model"])))
        if s.get("usage_by_model")
        else None,
        ("trace", s["trace_file"]),
        ("figures from", s["source"]) if "source" in s else None,
    ]
    if s["format"] == "seed":
        rows.append(("format", "seed observer trace (no run id, no sequence numbers)"))
    lines += [f"  {key:<15}{value}" for key, value in (r for r in rows if r is not None)]
    if s.get("costliest"):
        lines += ["", f"Costliest nodes (top {TOP})"]
        lines += _table(
            [(c["node_id"], _usd(c["cost_usd"])) for c in s["costliest"]], right=(False, True)
        )
    if s.get("slowest"):
        lines += ["", f"Slowest nodes (top {TOP})"]
        lines += _table(
            [
                (n["node_id"], format_seconds(n["duration_seconds"]), n["status"])
                for n in s["slowest"]
            ],
            right=(False, True, False),
        )
    if s.get("usage_by_model"):
        lines += ["", "Tokens and cost by model"]
        models: list[tuple[str, ...]] = [("model", "calls", "input", "output", "cost")]
        models += [_usage_row(model, figures) for model, figures in s["usage_by_model"].items()]
        if len(s["usage_by_model"]) > 1:
            models.append(_usage_row("all models", s["tokens"]))
        lines += _table(models, right=(False, True, True, True, True))
        if s["most_tokens"]:
            lines += ["", f"Most tokens by node (top {TOP})"]
            lines += _table(
                [
                    (
                        n["node_id"],
                        f"{int(n['input_tokens']):,} in",
                        f"{int(n['output_tokens']):,} out",
                        _usd(n["cost_usd"]),
                    )
                    for n in s["most_tokens"]
                ],
                right=(False, True, True, True),
            )
    if s.get("nested") and s["top_level"]:
        lines += ["", f"Time per top-level node, with its children (top {TOP})"]
        lines += _table(
            [
                (
                    n["node_id"],
                    format_seconds(n["seconds"]),
                    f"{n['nodes']} node{'s' if n['nodes'] != 1 else ''}",
                    n["status"],
                )
                for n in s["top_level"]
            ],
            right=(False, True, True, False),
        )
    path = s.get("critical_path")
    if (s.get("nested") or s.get("has_dependencies")) and path and path["nodes"]:
        share = f", {path['share']:.0%}" if path["share"] is not None else ""
        count = len(path["nodes"])
        lines += [
            "",
            f"Critical path ({count} node{'s' if count != 1 else ''}, "
            f"{format_seconds(path['seconds'])} of {format_seconds(path['wall_seconds'])} "
            f"wall time{share})",
        ]
        lines += _table(
            [
                (
                    f"+{format_seconds(n['start_seconds'])}",
                    format_seconds(n["duration_seconds"]),
                    " > ".join([*n["path"], n["node_id"]]),
                    n["status"],
                )
                for n in path["nodes"]
            ],
            right=(True, True, False, False),
        )
    if s.get("failures"):
        lines += ["", f"Failures ({len(s['failures'])})"]
        for failure in s["failures"]:
            tries = f" (after {failure['attempts']} attempts)" if failure["attempts"] > 1 else ""
            lines.append(f"  {failure['node_id']}{tries}: {one_line(failure['error'] or '', 300)}")
    if s["warnings"]:
        lines += ["", "Warnings"]
        lines += [f"  {one_line(w, 300)}" for w in s["warnings"]]
    return "\n".join(map(printable, lines)) + "\n"


def _table(rows: list[tuple[str, ...]], right: tuple[bool, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(right))]
    return [
        "  "
        + "  ".join(
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]


def format_seconds(value: float) -> str:
    """``812.5ms``, ``3.20s``, ``187.3s (3.1m)``."""
    if value >= 120:
        return f"{value:.1f}s ({value / 60:.1f}m)"
    if value >= 1:
        return f"{value:.2f}s"
    return f"{value * 1000:.1f}ms"


def _usage_row(name: str, figures: Mapping[str, float]) -> tuple[str, ...]:
    return (
        name,
        str(int(figures.get("calls", 0))),
        f"{int(figures['input_tokens']):,}",
        f"{int(figures['output_tokens']):,}",
        _usd(figures["cost_usd"]),
    )


def _tokens(totals: Mapping[str, float], models: int) -> str:
    return (
        f"{int(totals['input_tokens']):,} in / {int(totals['output_tokens']):,} out, "
        f"{_usd(totals['cost_usd'])} in {int(totals['calls'])} call"
        f"{'s' if totals['calls'] != 1 else ''} of {models} model{'s' if models != 1 else ''}"
    )


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"
