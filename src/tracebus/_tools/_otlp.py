"""OpenTelemetry OTLP/JSON: one ``TracesData`` object per line (the OTLP file format).

The workflow is the root span; each node attempt a child span with the node's fields as
``tracebus.*`` attributes and status ERROR when it failed. Retries and notes become span
events of the attempt running at that moment (else of the root). Ids are hex (trace id from
the run id, span ids derived from it, so an export is repeatable); times are nanoseconds
since the epoch, as strings, as the protobuf JSON mapping writes 64-bit integers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .._events import COMMON_FIELDS
from .._version import __version__
from ._record import NodeAttempt, NodeRecord, RunRecord

SPANS_PER_LINE = 1000

_SPAN_KIND_INTERNAL = 1
_STATUS_ERROR = 2
_HEX32 = re.compile(r"[0-9a-f]{32}")
_INT64 = range(-(2**63), 2**63)


def otlp_lines(run: RunRecord) -> Iterator[str]:
    """The run as OTLP/JSON lines (without newlines), the root span in the first."""
    trace_id = _trace_id(run)
    root_id = _span_id(trace_id, "workflow")
    start_ns = _ns(run.started)
    end_ns = _ns(run.ended)
    root_events: list[dict[str, Any]] = []
    by_node = {
        (node.node_id, attempt.number): _node_span(trace_id, root_id, node, attempt, end_ns)
        for node in run.nodes
        for attempt in node.attempts
    }
    for node in run.nodes:
        for retry in node.retries:
            _attach(by_node, node, retry, "retry", root_events, end_ns)
    nodes = {node.node_id: node for node in run.nodes}
    for note in run.notes:
        owner = nodes.get(str(note.get("node_id")))
        message = note.get("message")
        name = message if isinstance(message, str) and message else "note"
        _attach(by_node, owner, note, name, root_events, end_ns)
    root: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": root_id,
        "name": run.workflow_id or "workflow",
        "kind": _SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(max(start_ns, end_ns)),
        "attributes": _attributes(
            {
                "workflow_id": run.workflow_id,
                "run_id": run.run_id,
                "status": run.status,
                "total_nodes": run.total_nodes,
                **run.counts._asdict(),
                "cost_usd": run.cost_usd,
                "trace_file": str(run.trace_file),
            }
        ),
        "events": root_events,
    }
    if run.error is not None:
        root["status"] = {"code": _STATUS_ERROR, "message": run.error}
    everything = [root, *by_node.values()]
    for first in range(0, len(everything), SPANS_PER_LINE):
        yield json.dumps(
            _traces_data(run, everything[first : first + SPANS_PER_LINE]), separators=(",", ":")
        )


def _traces_data(run: RunRecord, spans: list[dict[str, Any]]) -> dict[str, Any]:
    resource = {
        "service.name": run.workflow_id or "tracebus",
        "tracebus.workflow_id": run.workflow_id,
        "tracebus.run_id": run.run_id,
    }
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(resource, prefix="")},
                "scopeSpans": [
                    {"scope": {"name": "tracebus", "version": __version__}, "spans": spans}
                ],
            }
        ]
    }


def _node_span(
    trace_id: str, root_id: str, node: NodeRecord, attempt: NodeAttempt, run_end_ns: int
) -> dict[str, Any]:
    start = _ns(attempt.start)
    end = _ns(attempt.end) if attempt.end is not None else run_end_ns
    fields: dict[str, Any] = {
        "node_id": node.node_id,
        "node_index": node.node_index,
        "status": attempt.status,
        "attempt": attempt.number,
    }
    fields.update((k, v) for k, v in attempt.fields.items() if k not in fields)
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": _span_id(trace_id, f"node/{node.node_id}/{attempt.number}"),
        "parentSpanId": root_id,
        "name": node.node_id,
        "kind": _SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(max(start, end)),
        "attributes": _attributes(fields),
        "events": [],
    }
    if attempt.status == "failed":
        span["status"] = {"code": _STATUS_ERROR, "message": attempt.error or "failed"}
    return span


def _attach(
    by_node: dict[tuple[str, int], dict[str, Any]],
    node: NodeRecord | None,
    event: Mapping[str, Any],
    name: str,
    root_events: list[dict[str, Any]],
    run_end_ns: int,
) -> None:
    epoch = event.get("epoch_seconds")
    at = _ns(epoch if isinstance(epoch, int | float) else None)
    span_event = {
        "timeUnixNano": str(at),
        "name": name,
        "attributes": _attributes(
            {k: v for k, v in event.items() if k not in COMMON_FIELDS and k != "message"}
        ),
    }
    target = root_events
    if node is not None and node.attempts:
        chosen = node.attempts[-1]
        for attempt in node.attempts:
            end = _ns(attempt.end) if attempt.end is not None else run_end_ns
            if _ns(attempt.start) <= at <= end:
                chosen = attempt
                break
        target = by_node[(node.node_id, chosen.number)]["events"]
    target.append(span_event)


def _attributes(values: Mapping[str, Any], prefix: str = "tracebus.") -> list[dict[str, Any]]:
    attributes = []
    for key, value in values.items():
        if value is None:
            continue
        if key == "fields" and isinstance(value, dict):
            attributes += _attributes(value, prefix=f"{prefix}fields.")
            continue
        attributes.append({"key": f"{prefix}{key}", "value": _any_value(value)})
    return attributes


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int) and value in _INT64:
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    return {"stringValue": json.dumps(value, sort_keys=True, default=repr)}


def _trace_id(run: RunRecord) -> str:
    run_id = (run.run_id or "").lower()
    if _HEX32.fullmatch(run_id) and run_id.strip("0"):
        return run_id
    seed = f"{run.workflow_id}/{run.run_id}/{run.started}/{run.trace_file.name}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _span_id(trace_id: str, what: str) -> str:
    return hashlib.sha256(f"{trace_id}/{what}".encode()).hexdigest()[:16]


def _ns(epoch: float | None) -> int:
    return round(epoch * 1_000_000_000) if epoch is not None else 0
