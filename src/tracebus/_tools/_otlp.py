"""OpenTelemetry OTLP/JSON: one ``TracesData`` object per line (the OTLP file format).

The spans are the core's (``SpanBuilder``: one span per node attempt, nested by parent span
id, span events for retries, notes and logs, the GenAI usage attributes, the workflow as the
root span, written last). The trace is read twice: once as the other readers read it (which
checks every line and gives the run's counts and warnings), then line by line into the
builder, whose spans are written out as they complete, ``SPANS_PER_LINE`` to a line, so
memory holds the attempts still open, not the run. Ids are hex; times are nanoseconds since
the epoch, as strings, as the protobuf JSON mapping writes 64-bit integers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import msgspec

from .._otlp_spans import Attributes, AttributeValue, Span, SpanBuilder
from .._version import __version__
from ._lines import TraceLine
from ._scan import AttemptsOnly, Progress, RunFacts, scan_run

SPANS_PER_LINE = 1000

_SPAN_KIND_INTERNAL = 1
_STATUS_ERROR = 2
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def read_for_otlp(
    path: str | os.PathLike[str], progress: Progress | None = None
) -> tuple[RunFacts, _NoNodes]:
    """The first pass: the run's facts (see ``read_run`` for ``path`` and what it raises)."""
    return scan_run(path, _NoNodes, progress)


def write_otlp(facts: RunFacts, output: BinaryIO, progress: Progress | None = None) -> int:
    """Write the run that ``facts`` describes as OTLP/JSON lines to ``output``; returns how
    many spans it wrote."""
    builder = SpanBuilder(trace_file=str(facts.trace_file))
    counts = facts.counts
    events = _run_events(facts, progress)
    written = 0
    batch: list[Span] = []
    for event in events:
        batch += builder.add(event)
        if len(batch) >= SPANS_PER_LINE:
            output.write(_line(builder, batch[:SPANS_PER_LINE]))
            written += SPANS_PER_LINE
            del batch[:SPANS_PER_LINE]
    batch += builder.finish(counts, facts.total_nodes)
    while batch:
        output.write(_line(builder, batch[:SPANS_PER_LINE]))
        written += min(len(batch), SPANS_PER_LINE)
        del batch[:SPANS_PER_LINE]
    return written


def _run_events(facts: RunFacts, progress: Progress | None) -> Iterator[dict[str, Any]]:
    """The events of the run ``facts`` describes (the trace's last), as dicts: the lines the
    first pass read and checked, and no more (a trace still growing is read as far as then)."""
    left = facts.events
    skipped = facts.skipped_runs  # earlier runs in the same trace: the last one is read
    starts = 0
    meter = progress(facts.trace_file) if progress is not None else None
    try:
        with open(facts.trace_file, "rb") as handle:
            for raw in handle:
                if meter is not None:
                    meter.update(len(raw))
                if left <= 0:
                    break
                if not raw.strip():
                    continue
                event = _decode(raw)
                if skipped:
                    starts += event.get("event_type") == "workflow_start"
                    if starts <= skipped:
                        continue
                    skipped = 0
                left -= 1
                yield event
    finally:
        if meter is not None:
            meter.close()


def _line(builder: SpanBuilder, spans: list[Span]) -> bytes:
    data = {
        "resourceSpans": [
            {
                "resource": {"attributes": _json_attributes(builder.resource())},
                "scopeSpans": [
                    {
                        "scope": {"name": "tracebus", "version": __version__},
                        "spans": [_json_span(span) for span in spans],
                    }
                ],
            }
        ]
    }
    return _encode(data) + b"\n"


def _json_span(span: Span) -> dict[str, Any]:
    data: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
    }
    if span.parent_span_id:
        data["parentSpanId"] = span.parent_span_id
    data.update(
        name=span.name,
        kind=_SPAN_KIND_INTERNAL,
        startTimeUnixNano=str(span.start_ns),
        endTimeUnixNano=str(span.end_ns),
        attributes=_json_attributes(span.attributes),
        events=[
            {
                "timeUnixNano": str(event.time_ns),
                "name": event.name,
                "attributes": _json_attributes(event.attributes),
            }
            for event in span.events
        ],
    )
    if span.dropped_events:
        data["droppedEventsCount"] = span.dropped_events
    if span.error is not None:
        data["status"] = {"code": _STATUS_ERROR, "message": span.error}
    return data


#: The AnyValue field of each attribute type (a subclass of one, say an IntEnum, is its base).
_VALUE_FIELD: dict[type, str] = {
    str: "stringValue",
    float: "doubleValue",
    bool: "boolValue",
    int: "intValue",
}


def _json_attributes(attributes: Attributes) -> list[dict[str, Any]]:
    return [{"key": key, "value": _json_value(value)} for key, value in attributes]


def _json_value(value: AttributeValue) -> dict[str, Any]:
    field = _VALUE_FIELD.get(type(value))
    if field is None:
        field = next(name for kind, name in _VALUE_FIELD.items() if isinstance(value, kind))
    if field == "intValue":
        return {field: str(value)}  # 64-bit integers are strings in protobuf's JSON
    return {field: value}


class _NoNodes(AttemptsOnly):
    """The first pass keeps nothing of the attempts: the spans are made in the second."""

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        pass
