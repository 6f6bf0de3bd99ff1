"""Two runs compared node by node: what was added or removed, what newly fails or passes,
whose output changed, what got slower, and where the cost and tokens went.

Each run is read in one pass of ``_scan`` with a sink that keeps a few columns per node (its
time and cost summed over its attempts; the output hash, output summary and error of its
last attempt), beside the scan's own totals of the ``usage`` events per node and per model:
memory in proportion to the nodes, never the events. Nodes are matched by their id, so runs
of either schema version and traces of the seed observer compare alike.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ._lines import TraceLine
from ._scan import AttemptsOnly, RunFacts, scan_run

#: What ``--check`` gates on, and the gates it uses when given none.
GATES = ("hash", "fail", "slower")
DEFAULT_GATES = ("hash", "fail")
#: The defaults of ``--slower`` and ``--min-seconds``.
SLOWER = 1.5
MIN_SECONDS = 0.1
_NO_USAGE: Mapping[str, float] = {}


class _DiffSink(AttemptsOnly):
    """Keeps what ``diff_runs`` compares of each node (by slot), as its attempts end (the
    scan totals the usage per node and per model)."""

    def __init__(self) -> None:
        self.seconds = array("d")
        self.cost = array("d")
        self.last_start = array("d")
        self.hashes: list[str | None] = []
        #: the output summary of the last attempt, as the JSON bytes of the trace (None: null)
        self.summaries: list[bytes | None] = []
        self.errors: dict[int, str] = {}

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        if slot >= len(self.hashes):
            self._grow(max(slot + 1, 2 * len(self.hashes)))
        if line is not None and line.duration_seconds is not None:
            self.seconds[slot] += max(0.0, line.duration_seconds)
        elif end is not None:
            self.seconds[slot] += end - start
        if line is not None:
            self.cost[slot] += line.cost_usd or 0.0
        if start < self.last_start[slot]:
            return  # the last attempt by start is the node's outcome
        self.last_start[slot] = start
        self.hashes[slot] = line.output_hash if line is not None else None
        raw = bytes(line.output_summary) if line is not None else b"null"
        self.summaries[slot] = None if raw == b"null" else raw
        if line is not None and status == "failed" and line.error is not None:
            self.errors[slot] = line.error
        else:
            self.errors.pop(slot, None)

    def _grow(self, size: int) -> None:
        missing = size - len(self.hashes)
        if missing <= 0:
            return
        self.seconds.extend(array("d", bytes(8 * missing)))
        self.cost.extend(array("d", bytes(8 * missing)))
        self.last_start.extend(array("d", (float("-inf"),)) * missing)
        self.hashes.extend([None] * missing)
        self.summaries.extend([None] * missing)

    def close(self, facts: RunFacts) -> None:
        """Cut the columns to the run's nodes (they grow ahead of them)."""
        self._grow(len(facts.node_ids))
        for column in (self.seconds, self.cost, self.last_start, self.hashes, self.summaries):
            del column[len(facts.node_ids) :]


@dataclass(frozen=True, slots=True)
class RunSide:
    """One side of a diff: the run's facts and what its sink kept."""

    facts: RunFacts
    sink: _DiffSink

    def has(self, node_id: str) -> bool:
        return node_id in self.facts.slots

    def status(self, node_id: str) -> str:
        slot = self.facts.slots.get(node_id)
        return "pending" if slot is None else self.facts.node_status(slot)

    def _slot(self, node_id: str) -> int | None:
        slot = self.facts.slots.get(node_id)
        return slot if slot is not None and slot < len(self.sink.hashes) else None

    def seconds(self, node_id: str) -> float:
        slot = self._slot(node_id)
        return self.sink.seconds[slot] if slot is not None else 0.0

    def output(self, node_id: str) -> tuple[str | None, bytes | None]:
        """The output hash and summary of the node's last attempt."""
        slot = self._slot(node_id)
        return (None, None) if slot is None else (self.sink.hashes[slot], self.sink.summaries[slot])

    def error(self, node_id: str) -> str | None:
        slot = self._slot(node_id)
        return self.sink.errors.get(slot) if slot is not None else None

    def node_cost(self, node_id: str) -> float:
        """The node's own cost and its ``usage`` events'."""
        slot = self._slot(node_id)
        own = self.sink.cost[slot] if slot is not None else 0.0
        return own + self.facts.node_usage.get(node_id, _NO_USAGE).get("cost_usd", 0.0)

    def node_tokens(self, node_id: str) -> int:
        return _tokens(self.facts.node_usage.get(node_id, _NO_USAGE))

    @property
    def tokens(self) -> int:
        return sum(_tokens(totals) for totals in self.facts.usage_by_model.values())

    @property
    def cost_usd(self) -> float:
        reported = self.facts.reported_cost_usd
        if reported is not None:
            return reported
        return sum(self.sink.cost, 0.0) + self.facts.usage_cost_usd


def _tokens(totals: Mapping[str, float]) -> int:
    return int(totals.get("input_tokens", 0) + totals.get("output_tokens", 0))


def read_side(path: str | os.PathLike[str]) -> RunSide:
    """Read one run for a diff, in one pass (see ``read_run`` for ``path`` and what it
    raises)."""
    facts, sink = scan_run(path, _DiffSink)
    return RunSide(facts, sink)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a node counts as slower (or faster): its time grew by ``factor`` and by at least
    ``min_seconds``."""

    factor: float = SLOWER
    min_seconds: float = MIN_SECONDS


def diff_runs(
    a: RunSide, b: RunSide, thresholds: Thresholds = Thresholds(), gates: Iterable[str] = ()
) -> dict[str, Any]:
    """The comparison of run ``a`` with run ``b``, as plain JSON-ready data; ``check`` says
    which of ``gates`` (of ``GATES``) tripped."""
    common = [node_id for node_id in a.facts.node_ids if b.has(node_id)]
    added = [node_id for node_id in b.facts.node_ids if not a.has(node_id)]
    removed = [node_id for node_id in a.facts.node_ids if not b.has(node_id)]
    newly_failing = [
        _failure(b, node_id, a.status(node_id))
        for node_id in common
        if b.status(node_id) == "failed" and a.status(node_id) != "failed"
    ]
    newly_failing += [
        _failure(b, node_id, None) for node_id in added if b.status(node_id) == "failed"
    ]
    newly_passing = [
        {"node_id": node_id, "before": "failed", "after": b.status(node_id)}
        for node_id in common
        if a.status(node_id) == "failed" and b.status(node_id) == "success"
    ]
    shown = {n["node_id"] for n in newly_failing} | {n["node_id"] for n in newly_passing}
    status_changed = [
        {"node_id": node_id, "before": a.status(node_id), "after": b.status(node_id)}
        for node_id in common
        if node_id not in shown and a.status(node_id) != b.status(node_id)
    ]
    output_changed = list(_output_changes(a, b, common))
    slower, faster = _time_changes(a, b, common, thresholds)
    tripped = {
        "fail": bool(newly_failing),
        "hash": bool(output_changed),
        "slower": bool(slower),
    }
    chosen = [gate for gate in GATES if gate in set(gates)]
    return {
        "a": _head(a),
        "b": _head(b),
        "thresholds": {"slower": thresholds.factor, "min_seconds": thresholds.min_seconds},
        "totals": _totals(a, b),
        "added": [{"node_id": n, "status": b.status(n)} for n in added],
        "removed": [{"node_id": n, "status": a.status(n)} for n in removed],
        "newly_failing": newly_failing,
        "newly_passing": newly_passing,
        "status_changed": status_changed,
        "output_changed": output_changed,
        "slower": slower,
        "faster": faster,
        "nodes_spend": list(_spend_changes(a, b)),
        "models": list(_model_changes(a, b)),
        "check": {
            "gates": chosen,
            "tripped": [gate for gate in chosen if tripped[gate]],
        },
    }


def _head(side: RunSide) -> dict[str, Any]:
    facts = side.facts
    return {
        "workflow_id": facts.workflow_id,
        "run_id": facts.run_id,
        "status": facts.status,
        "format": "seed" if facts.seed_format else "tracebus",
        "trace_file": str(facts.trace_file),
        "warnings": list(facts.warnings),
    }


def _totals(a: RunSide, b: RunSide) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for key in ("nodes_seen", "nodes_completed", "nodes_failed", "nodes_skipped"):
        rows[key] = _pair(getattr(a.facts.counts, key), getattr(b.facts.counts, key))
    rows["nodes_unfinished"] = _pair(
        a.facts.counts.nodes_unfinished, b.facts.counts.nodes_unfinished
    )
    rows["wall_seconds"] = _pair(a.facts.wall_seconds, b.facts.wall_seconds)
    rows["node_seconds"] = _pair(sum(a.sink.seconds, 0.0), sum(b.sink.seconds, 0.0))
    rows["cost_usd"] = _pair(a.cost_usd, b.cost_usd)
    rows["tokens"] = _pair(a.tokens, b.tokens)
    return rows


def _pair(before: float, after: float) -> dict[str, float]:
    return {"a": before, "b": after, "delta": after - before}


def _failure(side: RunSide, node_id: str, before: str | None) -> dict[str, Any]:
    return {"node_id": node_id, "before": before, "error": side.error(node_id)}


def _output_changes(a: RunSide, b: RunSide, common: list[str]) -> Iterator[dict[str, Any]]:
    for node_id in common:
        (hash_a, summary_a), (hash_b, summary_b) = a.output(node_id), b.output(node_id)
        if hash_a is None or hash_b is None:
            continue  # no hash on one side: nothing to compare
        if hash_a != hash_b:
            yield {
                "node_id": node_id,
                "a": {"hash": hash_a, "summary": _decoded(summary_a)},
                "b": {"hash": hash_b, "summary": _decoded(summary_b)},
            }


def _decoded(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:  # a value msgspec refuses that the line reader accepted
        return raw.decode("utf-8", "replace")


def _time_changes(
    a: RunSide, b: RunSide, common: list[str], thresholds: Thresholds
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    slower: list[dict[str, Any]] = []
    faster: list[dict[str, Any]] = []
    for node_id in common:
        before, after = a.seconds(node_id), b.seconds(node_id)
        row = {
            "node_id": node_id,
            "a_seconds": before,
            "b_seconds": after,
            "ratio": after / before if before > 0 else None,
        }
        if _grew(before, after, thresholds):
            slower.append(row)
        elif _grew(after, before, thresholds):
            faster.append(row)
    slower.sort(key=lambda row: row["a_seconds"] - row["b_seconds"])
    faster.sort(key=lambda row: row["b_seconds"] - row["a_seconds"])
    return slower, faster


def _grew(before: float, after: float, thresholds: Thresholds) -> bool:
    return after - before >= thresholds.min_seconds and after >= before * thresholds.factor


def _spend_changes(a: RunSide, b: RunSide) -> Iterator[dict[str, Any]]:
    """The nodes whose cost or tokens differ, both runs' nodes, in order of appearance."""
    seen = dict.fromkeys(
        [*a.facts.node_ids, *b.facts.node_ids, *a.facts.node_usage, *b.facts.node_usage]
    )
    for node_id in seen:
        cost = _pair(a.node_cost(node_id), b.node_cost(node_id))
        tokens = _pair(a.node_tokens(node_id), b.node_tokens(node_id))
        if cost["delta"] or tokens["delta"]:
            yield {"node_id": node_id, "cost_usd": cost, "tokens": tokens}


def _model_changes(a: RunSide, b: RunSide) -> Iterator[dict[str, Any]]:
    """The models whose calls, tokens or cost differ."""
    for model in sorted({*a.facts.usage_by_model, *b.facts.usage_by_model}):
        before = a.facts.usage_by_model.get(model, _NO_USAGE)
        after = b.facts.usage_by_model.get(model, _NO_USAGE)
        pairs = {
            key: _pair(before.get(key, 0), after.get(key, 0))
            for key in ("calls", "input_tokens", "output_tokens", "cost_usd")
        }
        if any(pair["delta"] for pair in pairs.values()):
            yield {"model": model, **pairs}
