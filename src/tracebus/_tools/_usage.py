"""Token usage read back: the ``usage`` events of a run totalled per model and per node.

The totals have the metadata's shape (``usage_by_model`` and ``node_usage``): per model
``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` and the other counters by name;
per node the same without ``calls``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._lines import TraceLine

#: What every node's totals hold, in this order; a model's start with ``calls``.
TOKEN_KEYS = ("input_tokens", "output_tokens", "cost_usd")

_decode_counters = msgspec.json.Decoder(dict[str, Any]).decode
_NO_COUNTERS = (b"null", b"{}")


def counters_of(line: TraceLine) -> dict[str, int]:
    """The extra counters of a ``usage`` line (cached, reasoning tokens...): whole numbers
    only, a value of another kind (a newer writer's) is left out."""
    raw = bytes(line.counters)
    if raw in _NO_COUNTERS:
        return {}
    try:
        counters = _decode_counters(raw)
    except msgspec.DecodeError:
        return {}
    return {
        name: value
        for name, value in counters.items()
        if type(value) is int and name not in TOKEN_KEYS and name != "calls"
    }


def new_totals(calls: bool) -> dict[str, float]:
    totals: dict[str, float] = {"calls": 0} if calls else {}
    totals.update({"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
    return totals


def add_usage(totals: dict[str, float], line: TraceLine, counters: dict[str, int]) -> None:
    """Add one ``usage`` line to ``totals`` (counting a call where ``totals`` counts them)."""
    if "calls" in totals:
        totals["calls"] += 1
    totals["input_tokens"] += line.input_tokens or 0
    totals["output_tokens"] += line.output_tokens or 0
    totals["cost_usd"] += line.cost_usd or 0.0
    for name, value in counters.items():
        totals[name] = totals.get(name, 0) + value


class UsageTally:
    """The usage lines of a run, totalled per model and per node id as they come."""

    __slots__ = ("by_model", "by_node", "cost_usd")

    def __init__(self) -> None:
        self.by_model: dict[str, dict[str, float]] = {}
        self.by_node: dict[str, dict[str, float]] = {}
        self.cost_usd = 0.0

    def add(self, line: TraceLine) -> dict[str, int]:
        """Count ``line``; returns its counters."""
        counters = counters_of(line)
        model = line.model if line.model is not None else ""
        totals = self.by_model.get(model)
        if totals is None:
            totals = self.by_model[model] = new_totals(calls=True)
        add_usage(totals, line, counters)
        if line.node_id is not None:
            node = self.by_node.get(line.node_id)
            if node is None:
                node = self.by_node[line.node_id] = new_totals(calls=False)
            add_usage(node, line, counters)
        self.cost_usd += line.cost_usd or 0.0
        return counters
