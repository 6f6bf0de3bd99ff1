"""Two runs compared node by node: what was added or removed, what newly fails or passes,
whose output changed, what got slower, and where the cost and tokens went.

Each run is read in one pass of ``_scan`` with a sink that keeps a few figures per node (its
time and cost summed over its attempts, and the outcome, output hash and output summary of
its last attempt) and the tokens and cost of the ``usage`` events per node and per model: memory
in proportion to the nodes, never the events. Nodes are matched by their id, so runs of either
schema version and traces of the seed observer compare alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._find import find_run
from ._lines import NULL, TraceLine, iter_blocks
from ._scan import RunFacts, RunScan

#: What ``--check`` gates on, and the gates it uses when given none.
GATES = ("hash", "fail", "slower")
DEFAULT_GATES = ("hash", "fail")
#: The defaults of ``--slower`` and ``--min-seconds``.
SLOWER = 1.5
MIN_SECONDS = 0.1


@dataclass(slots=True)
class _Node:
    """What a diff keeps of one node of a run."""

    seconds: float = 0.0
    cost_usd: float = 0.0
    last_start: float = float("-inf")
    output_hash: str | None = None
    output_summary: bytes = bytes(NULL)
    error: str | None = None


@dataclass(slots=True)
class _Spend:
    """The ``usage`` events of a node or a model, added up."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class _DiffSink:
    """Keeps what ``diff_runs`` compares of each node, as its attempts end."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.by_node: dict[str, _Spend] = {}
        self.by_model: dict[str, _Spend] = {}
        self.run_spend = _Spend()

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        while slot >= len(self.nodes):
            self.nodes.append(_Node())
        node = self.nodes[slot]
        if line is not None and line.duration_seconds is not None:
            node.seconds += max(0.0, line.duration_seconds)
        elif end is not None:
            node.seconds += end - start
        if line is not None:
            node.cost_usd += line.cost_usd or 0.0
        if start >= node.last_start:  # the last attempt by start is the node's outcome
            node.last_start = start
            node.output_hash = line.output_hash if line is not None else None
            raw = line.output_summary if line is not None else NULL
            node.output_summary = bytes(raw) if raw else bytes(NULL)
            node.error = line.error if line is not None and status == "failed" else None

    def retry(self, slot: int, line: TraceLine) -> None:
        pass

    def note(self, line: TraceLine) -> None:
        pass

    def spent(self, line: TraceLine) -> None:
        """A ``usage`` event: its tokens and cost, for its node (if any) and its model."""
        model = getattr(line, "model", None)
        spend = _Spend(
            1,
            _whole(getattr(line, "input_tokens", 0)),
            _whole(getattr(line, "output_tokens", 0)),
            line.cost_usd or 0.0,
        )
        targets = [self.run_spend]
        if line.node_id is not None:
            targets.append(self.by_node.setdefault(line.node_id, _Spend()))
        if isinstance(model, str):
            targets.append(self.by_model.setdefault(model, _Spend()))
        for target in targets:
            target.calls += spend.calls
            target.input_tokens += spend.input_tokens
            target.output_tokens += spend.output_tokens
            target.cost_usd += spend.cost_usd


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class RunSide:
    """One side of a diff: the run's facts and what its sink kept."""

    facts: RunFacts
    sink: _DiffSink
    slots: dict[str, int] = field(default_factory=dict)

    def node(self, node_id: str) -> _Node | None:
        slot = self.slots.get(node_id)
        if slot is None:
            return None
        return self.sink.nodes[slot] if slot < len(self.sink.nodes) else _Node()

    def status(self, node_id: str) -> str:
        return self.facts.tally.status(node_id) or "pending"

    def node_cost(self, node_id: str) -> float:
        node = self.node(node_id)
        spend = self.sink.by_node.get(node_id)
        return (node.cost_usd if node else 0.0) + (spend.cost_usd if spend else 0.0)

    def node_tokens(self, node_id: str) -> int:
        spend = self.sink.by_node.get(node_id)
        return spend.tokens if spend else 0

    @property
    def cost_usd(self) -> float:
        reported = self.facts.reported_cost_usd
        if reported is not None:
            return reported
        return sum((n.cost_usd for n in self.sink.nodes), 0.0) + self.sink.run_spend.cost_usd


def read_side(path: str | os.PathLike[str]) -> RunSide:
    """Read one run for a diff, in one pass (see ``read_run`` for ``path`` and what it
    raises)."""
    found = find_run(path)
    torn: list[int] = []
    scan = RunScan(_DiffSink)
    for block in iter_blocks(found.trace_file, lambda n, _raw: torn.append(n)):
        for line in block:
            scan.add(line)
            if line.event_type == "usage":
                scan.sink.spent(line)
    facts = scan.finish(found, torn_line=torn[0] if torn else None)
    return RunSide(facts, scan.sink, {node_id: i for i, node_id in enumerate(facts.node_ids)})


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
    common = [node_id for node_id in a.facts.node_ids if node_id in b.slots]
    added = [node_id for node_id in b.facts.node_ids if node_id not in a.slots]
    removed = [node_id for node_id in a.facts.node_ids if node_id not in b.slots]
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
    rows["node_seconds"] = _pair(
        sum(n.seconds for n in a.sink.nodes), sum(n.seconds for n in b.sink.nodes)
    )
    rows["cost_usd"] = _pair(a.cost_usd, b.cost_usd)
    rows["tokens"] = _pair(a.sink.run_spend.tokens, b.sink.run_spend.tokens)
    return rows


def _pair(before: float, after: float) -> dict[str, float]:
    return {"a": before, "b": after, "delta": after - before}


def _failure(side: RunSide, node_id: str, before: str | None) -> dict[str, Any]:
    node = side.node(node_id)
    return {"node_id": node_id, "before": before, "error": node.error if node else None}


def _output_changes(a: RunSide, b: RunSide, common: list[str]) -> Iterator[dict[str, Any]]:
    for node_id in common:
        before, after = a.node(node_id), b.node(node_id)
        if before is None or after is None:
            continue
        if before.output_hash is None or after.output_hash is None:
            continue  # no hash on one side: nothing to compare
        if before.output_hash != after.output_hash:
            yield {
                "node_id": node_id,
                "a": {"hash": before.output_hash, "summary": _decoded(before.output_summary)},
                "b": {"hash": after.output_hash, "summary": _decoded(after.output_summary)},
            }


def _decoded(raw: bytes) -> Any:
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
        before, after = a.node(node_id), b.node(node_id)
        if before is None or after is None:
            continue
        row = {
            "node_id": node_id,
            "a_seconds": before.seconds,
            "b_seconds": after.seconds,
            "ratio": after.seconds / before.seconds if before.seconds > 0 else None,
        }
        if _grew(before.seconds, after.seconds, thresholds):
            slower.append(row)
        elif _grew(after.seconds, before.seconds, thresholds):
            faster.append(row)
    slower.sort(key=lambda row: row["a_seconds"] - row["b_seconds"])
    faster.sort(key=lambda row: row["b_seconds"] - row["a_seconds"])
    return slower, faster


def _grew(before: float, after: float, thresholds: Thresholds) -> bool:
    return after - before >= thresholds.min_seconds and after >= before * thresholds.factor


def _spend_changes(a: RunSide, b: RunSide) -> Iterator[dict[str, Any]]:
    """The nodes whose cost or tokens differ, both runs' nodes, in order of appearance."""
    seen = dict.fromkeys([*a.facts.node_ids, *b.facts.node_ids, *a.sink.by_node, *b.sink.by_node])
    for node_id in seen:
        cost = _pair(a.node_cost(node_id), b.node_cost(node_id))
        tokens = _pair(a.node_tokens(node_id), b.node_tokens(node_id))
        if cost["delta"] or tokens["delta"]:
            yield {"node_id": node_id, "cost_usd": cost, "tokens": tokens}


def _model_changes(a: RunSide, b: RunSide) -> Iterator[dict[str, Any]]:
    """The models whose calls, tokens or cost differ."""
    for model in sorted({*a.sink.by_model, *b.sink.by_model}):
        before = a.sink.by_model.get(model, _Spend())
        after = b.sink.by_model.get(model, _Spend())
        if before == after:
            continue
        yield {
            "model": model,
            "calls": _pair(before.calls, after.calls),
            "input_tokens": _pair(before.input_tokens, after.input_tokens),
            "output_tokens": _pair(before.output_tokens, after.output_tokens),
            "cost_usd": _pair(before.cost_usd, after.cost_usd),
        }
