"""A run's totals from its metadata, without reading the trace: ``summary --fast`` and
``summary --totals``.

``--fast`` answers from metadata that is complete: it names the run's final status
(``complete`` or ``error``) and every count as a whole number, and was matched to the trace
by ``find_run``. The figures that need the attempts (node time, parallelism, the costliest
and slowest nodes, the failures) are None; ``source`` says where the figures come from.

``--totals`` gives only the figures the metadata holds exactly as a read of the trace gives
them (``TOTALS``: the status and error, the node counts, retries, the cost), and answers
from the metadata only where it is provably of the trace as the trace is now: complete, and
recording the trace's size (``trace_bytes``, written by the writer with its last event), a
size the trace still has, and no event lost or dropped on the way. Wall time and peak in
flight are left out: the writer measures them on its own clock and as events arrive, a read
of the trace from the events' times, and the two differ by a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._counts import NodeCounts
from ._find import FoundRun

SOURCE = "metadata (--fast): totals only; the nodes' figures need the whole trace read"
TOTALS_FROM_METADATA = "metadata (--totals): complete, and of the trace as it is now"
TOTALS_FROM_TRACE = "trace (--totals)"
#: The figures of ``--totals``, the same whichever of the metadata or the trace they come from.
TOTALS = (
    "workflow_id",
    "run_id",
    "status",
    "ok",
    "error",
    "format",
    "trace_file",
    "metadata_file",
    "total_nodes",
    "nodes_succeeded",
    *NodeCounts._fields,
    "cost_usd",
    "warnings",
)


def metadata_summary(found: FoundRun) -> dict[str, Any] | None:
    """The summary's figures from ``found``'s metadata, or None when it is not complete.
    A trace whose size is not the one the metadata records adds a warning."""
    meta: Mapping[str, Any] = found.metadata or {}
    if _incomplete(meta):
        return None
    warnings = list(found.warnings)
    changed = _changed(found)
    if changed is not None:
        warnings.append(f"--fast: {changed}")
    return _figures(found, meta, warnings)


def _figures(found: FoundRun, meta: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The summary's figures from complete metadata ``meta``."""
    counts = {key: meta[key] for key in NodeCounts._fields}
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
        "warnings": warnings,
        "source": SOURCE,
    }


def trusted_totals(found: FoundRun) -> tuple[dict[str, Any] | None, str]:
    """``--totals`` from ``found``'s metadata, or None when it cannot be trusted to give
    what a read of the trace would; with it, why not (one line)."""
    meta = found.metadata
    if meta is None:
        return None, "no metadata describes this trace"
    if _incomplete(meta):
        return None, f"its metadata is not complete (status {meta.get('status')!r})"
    if not _whole(meta.get("trace_bytes")):
        return None, "its metadata does not record the trace's size (an older tracebus wrote it)"
    changed = _changed(found)
    if changed is not None:
        return None, changed
    for key, what in (("events_lost", "lost"), ("events_dropped", "dropped")):
        if meta.get(key) != 0:
            return None, f"its metadata records {meta.get(key)} event(s) {what}"
    return totals_of(_figures(found, meta, list(found.warnings)), TOTALS_FROM_METADATA), ""


def totals_of(figures: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The ``--totals`` figures of a summary's, with where they come from."""
    return {**{key: figures[key] for key in TOTALS}, "source": source}


def _incomplete(meta: Mapping[str, Any]) -> bool:
    return meta.get("status") not in ("complete", "error") or not all(
        _whole(meta.get(key)) for key in (*NodeCounts._fields, "total_nodes")
    )


def _changed(found: FoundRun) -> str | None:
    """How the trace differs from the size its metadata records, or None (the same, or
    not recorded)."""
    recorded = (found.metadata or {}).get("trace_bytes")
    if not _whole(recorded):
        return None
    try:
        size = found.trace_file.stat().st_size
    except OSError as exc:
        return f"the trace cannot be examined ({exc})"
    if size == recorded:
        return None
    return f"the trace changed since its metadata was written ({recorded} bytes then, {size} now)"


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
