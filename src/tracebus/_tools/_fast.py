"""``summary --fast``: a run's totals from its metadata alone, without reading the trace.

Only a run whose metadata is complete answers this way: it names the run's final status
(``complete`` or ``error``) and every count as a whole number, and was matched to the trace
by ``find_run``. The figures that need the attempts (node time, parallelism, the costliest
and slowest nodes, the failures) are None; ``source`` says where the figures come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._counts import NodeCounts
from ._find import FoundRun

SOURCE = "metadata (--fast): totals only; the nodes' figures need the whole trace read"


def metadata_summary(found: FoundRun) -> dict[str, Any] | None:
    """The summary's figures from ``found``'s metadata, or None when it is not complete."""
    meta: Mapping[str, Any] = found.metadata or {}
    counts = {key: meta.get(key) for key in NodeCounts._fields}
    if meta.get("status") not in ("complete", "error") or not all(
        _whole(value) for value in (*counts.values(), meta.get("total_nodes"))
    ):
        return None
    wall: Any = meta.get("total_time_seconds")
    cost: Any = meta.get("cumulative_cost_usd")
    peak = meta.get("peak_in_flight")
    status = str(meta["status"])
    error = meta.get("error")
    return {
        "workflow_id": str(meta.get("workflow_id") or ""),
        "run_id": meta.get("run_id") if isinstance(meta.get("run_id"), str) else None,
        "status": status,
        "ok": status == "complete" and counts["nodes_failed"] == 0,
        "error": error if isinstance(error, str) else None,
        "format": "tracebus",
        "trace_file": str(found.trace_file),
        "metadata_file": str(found.metadata_file) if found.metadata_file else None,
        "total_nodes": meta["total_nodes"],
        "nodes_succeeded": counts["nodes_completed"],
        **counts,
        "wall_seconds": float(wall) if _real(wall) else 0.0,
        "node_seconds": None,
        "parallelism": None,
        "peak_in_flight": peak if _whole(peak) else None,
        "cost_usd": float(cost) if _real(cost) else None,
        "costliest": None,
        "slowest": None,
        "failures": None,
        "warnings": list(found.warnings),
        "source": SOURCE,
    }


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
