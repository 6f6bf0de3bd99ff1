"""A run's events as OpenTelemetry spans: the one mapping, for the file export and the live
exporter alike.

``SpanBuilder`` is fed a run's events in trace order, as the trace's dicts, and hands back
each span as soon as it is complete, so that it holds only the attempts still open:

- each node attempt is a span, emitted when the attempt ends, its parent the span of the
  attempt of its ``parent_id`` that was open when it started (else the workflow's); its
  attributes are the node's fields as ``tracebus.*``, status ERROR when it failed, and the
  GenAI attributes of the ``usage`` events recorded while it ran;
- ``node_retry`` events, notes and ``log`` events are span events of the attempt of their
  node that is running (a retry announced between two attempts goes to the next one);
  those of no running node go to the workflow's span;
- the workflow is the root span, emitted last (at ``workflow_complete``/``workflow_error``,
  or by ``finish`` for a trace that stops early); its parent is the ``TraceParent`` given,
  if any.

Ids are deterministic: the trace id is the run id (when it is 32 hex digits, else derived
from the run's identity), span ids are derived from it and the node and attempt, so an export
is repeatable. Under a ``TraceParent`` the spans take its trace id; their span ids stay those
of the run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._counts import NodeCounts
from ._events import COMMON_FIELDS, MAX_INT, MIN_INT

#: A span keeps at most this many span events; the others are counted in its
#: ``dropped_events``, as OpenTelemetry's SDK does past its own limit.
MAX_SPAN_EVENTS = 1000

#: An attribute's value, as OTLP's AnyValue holds it.
AttributeValue = bool | int | float | str
Attributes = list[tuple[str, AttributeValue]]

_END_STATUS = {"node_success": "success", "node_failure": "failed", "node_skipped": "skipped"}
_HEX32 = re.compile(r"[0-9a-f]{32}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class TraceParent(NamedTuple):
    """A W3C trace context: the trace and span a run's root span belongs under."""

    trace_id: str
    span_id: str
    flags: int = 1

    @classmethod
    def parse(cls, header: str) -> TraceParent | None:
        """The ``traceparent`` header ``header`` (``00-<trace id>-<span id>-<flags>``), or
        None when it is not a valid one (the W3C rules: all-zero ids are invalid, version
        ``ff`` is, and a future version may add fields after the four)."""
        text = header.strip().lower()
        match = _TRACEPARENT.match(text)
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or (version == "00" and len(text) != 55):
            return None
        if len(text) > 55 and text[55] != "-":
            return None
        if not trace_id.strip("0") or not span_id.strip("0"):
            return None
        return cls(trace_id, span_id, int(flags, 16))


@dataclass(slots=True)
class SpanEvent:
    time_ns: int
    name: str
    attributes: Attributes


@dataclass(slots=True)
class Span:
    """One finished span; ids are lowercase hex, times nanoseconds since the epoch."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: Attributes
    events: list[SpanEvent] = field(default_factory=list)
    dropped_events: int = 0
    #: Status ERROR with this message; None leaves the status unset.
    error: str | None = None


@dataclass(slots=True)
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    #: tokens (input + output) by model, in order of first use
    by_model: dict[str, list[float]] = field(default_factory=dict)

    def add(self, event: Mapping[str, Any]) -> None:
        model = str(event.get("model") or "")
        tokens_in = _whole(event.get("input_tokens"))
        tokens_out = _whole(event.get("output_tokens"))
        cost = _real(event.get("cost_usd"))
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        self.cost_usd += cost
        self.calls += 1
        entry = self.by_model.setdefault(model, [0, 0, 0.0, 0])
        entry[0] += tokens_in
        entry[1] += tokens_out
        entry[2] += cost
        entry[3] += 1

    def attributes(self) -> Attributes:
        """The GenAI attributes: the totals of every call, and the model that spent the most
        tokens (the first of those that tie) as ``gen_ai.request.model``; with several
        models, ``tracebus.usage_by_model`` gives each one's figures."""
        if not self.calls:
            return []
        model = max(self.by_model, key=lambda name: self.by_model[name][0] + self.by_model[name][1])
        attributes: Attributes = [
            ("gen_ai.request.model", model),
            ("gen_ai.usage.input_tokens", self.input_tokens),
            ("gen_ai.usage.output_tokens", self.output_tokens),
            ("tracebus.usage.calls", self.calls),
            ("tracebus.usage.cost_usd", self.cost_usd),
        ]
        if len(self.by_model) > 1:
            by_model = {
                name: {
                    "input_tokens": figures[0],
                    "output_tokens": figures[1],
                    "cost_usd": figures[2],
                    "calls": figures[3],
                }
                for name, figures in self.by_model.items()
            }
            attributes.append(("tracebus.usage_by_model", _json(by_model)))
        return attributes


@dataclass(slots=True)
class _Open:
    """An attempt that has started and not ended."""

    node_id: str
    number: int
    span_id: str
    parent_span_id: str
    start_ns: int
    start: Mapping[str, Any] | None
    events: list[SpanEvent] = field(default_factory=list)
    dropped_events: int = 0
    usage: _Usage | None = None


class SpanBuilder:
    """Turns one run's events, fed in trace order, into spans (see the module's docstring).

    ``trace_file`` names the trace the events come from (a root attribute, and part of the
    derived trace id of a run without a run id); ``parent`` is the trace context the root
    span belongs under; ``max_events`` bounds the span events a span holds.
    """

    def __init__(
        self,
        *,
        trace_file: str | None = None,
        parent: TraceParent | None = None,
        max_events: int = MAX_SPAN_EVENTS,
    ) -> None:
        self._trace_file = trace_file
        self._parent = parent
        self._max_events = max_events
        self._begin()

    def _begin(self) -> None:
        self.workflow_id = ""
        self.run_id: str | None = None
        self._started = False
        self._ended = False
        self._trace_id = ""
        self._seed = ""
        self._root_id = ""
        self._total_nodes: int | None = None
        self._first_ns: int | None = None
        self._last_ns = 0
        self._earliest_ns: int | None = None
        self._latest_ns: int | None = None
        self._attempts: dict[str, int] = {}
        self._open: dict[str, deque[_Open]] = {}
        self._pending: dict[str, list[SpanEvent]] = {}
        self._root = _Open("", 0, "", "", 0, None)
        self._end: Mapping[str, Any] | None = None
        self._node_cost = 0.0
        self._node_costs = False

    @property
    def trace_id(self) -> str:
        return self._trace_id

    def resource(self) -> Attributes:
        """The resource attributes of the run's spans."""
        return [
            ("service.name", self.workflow_id or "tracebus"),
            ("tracebus.workflow_id", self.workflow_id),
            *((("tracebus.run_id", self.run_id),) if self.run_id is not None else ()),
        ]

    def add(self, event: Mapping[str, Any]) -> list[Span]:
        """Take the run's next event; returns the spans it completed (usually none or one)."""
        kind = event.get("event_type")
        done: list[Span] = []
        if kind == "workflow_start" and self._started:
            done = self.finish()
            self._begin()
        if not self._started:
            self._start_run(event)
        if self._ended:
            return done
        epoch = event.get("epoch_seconds")
        if isinstance(epoch, int | float) and not isinstance(epoch, bool):
            at = _ns(epoch)
            self._last_ns = max(self._last_ns, at)
            if self._first_ns is None or at < self._first_ns:
                self._first_ns = at
        else:
            at = self._last_ns
        node_id = event.get("node_id")
        if not isinstance(node_id, str):
            node_id = None
        if kind == "node_start":
            if node_id is not None:
                self._start(node_id, event, at)
        elif kind in _END_STATUS:
            if node_id is not None:
                done.append(self._finish_attempt(node_id, _END_STATUS[kind], event, at))
        elif kind == "node_retry":
            if node_id is not None:
                target = self._running(node_id)
                span_event = self._span_event(event, "retry", at)
                if target is not None:
                    self._attach(target, span_event)
                else:
                    self._pending.setdefault(node_id, []).append(span_event)
        elif kind == "note" or kind == "log":
            message = event.get("message")
            name = message if isinstance(message, str) and message else str(kind)
            target = self._running(node_id) if node_id is not None else None
            self._attach(target or self._root, self._span_event(event, name, at))
        elif kind == "usage":
            target = (self._running(node_id) if node_id is not None else None) or self._root
            if target.usage is None:
                target.usage = _Usage()
            target.usage.add(event)
        elif kind == "workflow_complete" or kind == "workflow_error":
            self._end = event
            done += self.finish()
        return done

    def finish(
        self, counts: NodeCounts | None = None, total_nodes: int | None = None
    ) -> list[Span]:
        """The run ends (its end event came, or the trace stops): the attempts still open,
        as ``running`` until the run's end, then the root span. Once only: later calls (and
        events until the next ``workflow_start``) give nothing.

        ``counts`` and ``total_nodes`` are the root's when the caller knows them better than
        the events (a reader's, for a trace with no end event)."""
        if self._ended or not self._started:
            return []
        self._ended = True
        end_ns = max(self._last_ns, self._latest_ns or 0)
        spans = []
        for attempts in self._open.values():
            for attempt in attempts:
                spans.append(self._span(attempt, "running", None, end_ns))
        self._open.clear()
        for waiting in self._pending.values():
            for span_event in waiting:
                self._attach(self._root, span_event)
        self._pending.clear()
        spans.append(self._root_span(end_ns, counts, total_nodes))
        return spans

    # -- the run -----------------------------------------------------------------------------

    def _start_run(self, event: Mapping[str, Any]) -> None:
        self._started = True
        self.workflow_id = _text(event.get("workflow_id")) or ""
        run_id = event.get("run_id")
        self.run_id = run_id if isinstance(run_id, str) else None
        if event.get("event_type") == "workflow_start":
            total = event.get("total_nodes")
            self._total_nodes = total if isinstance(total, int) else None
        own = (self.run_id or "").lower()
        if not (_HEX32.fullmatch(own) and own.strip("0")):
            epoch = event.get("epoch_seconds")
            seed = f"{self.workflow_id}/{self.run_id}/{epoch}/{self._trace_file or ''}"
            own = hashlib.sha256(seed.encode()).hexdigest()[:32]
        self._seed = own
        self._trace_id = self._parent.trace_id if self._parent is not None else own
        self._root_id = self._span_id("workflow")
        self._root.span_id = self._root_id
        self._root.parent_span_id = self._parent.span_id if self._parent is not None else ""

    def _root_span(self, end_ns: int, counts: NodeCounts | None, total_nodes: int | None) -> Span:
        end = self._end or {}
        status = "incomplete"
        if end.get("event_type") == "workflow_error":
            status = "error"
        elif end:
            status = "complete"
        start_ns = self._first_ns or 0
        if self._earliest_ns is not None:
            start_ns = min(start_ns, self._earliest_ns)
        fields: dict[str, Any] = {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": status,
            "total_nodes": total_nodes
            if total_nodes is not None
            else max(self._total_nodes or 0, len(self._attempts)),
        }
        if counts is not None:
            fields.update(counts._asdict())
        else:
            fields.update((key, end[key]) for key in NodeCounts._fields if key in end)
        cost = end.get("cumulative_cost_usd") if status == "complete" else None
        if cost is None and (status != "incomplete" or self._node_costs):
            cost = self._node_cost
        fields["cost_usd"] = cost
        fields["trace_file"] = self._trace_file or end.get("trace_file")
        attributes = _attributes(fields)
        if self._root.usage is not None:
            attributes += self._root.usage.attributes()
        error = end.get("error") if status == "error" else None
        return Span(
            trace_id=self._trace_id,
            span_id=self._root_id,
            parent_span_id=self._root.parent_span_id,
            name=self.workflow_id or "workflow",
            start_ns=start_ns,
            end_ns=max(start_ns, end_ns),
            attributes=attributes,
            events=self._root.events,
            dropped_events=self._root.dropped_events,
            error=(str(error) or "workflow error") if status == "error" else None,
        )

    # -- the attempts ------------------------------------------------------------------------

    def _start(self, node_id: str, event: Mapping[str, Any], at: int) -> None:
        number = self._attempts.get(node_id, 0) + 1
        self._attempts[node_id] = number
        parent_id = event.get("parent_id")
        parent_span = self._root_id
        if isinstance(parent_id, str) and parent_id != node_id:
            parent = self._running(parent_id)
            if parent is not None:
                parent_span = parent.span_id
            elif parent_id in self._attempts:
                parent_span = self._attempt_id(parent_id, self._attempts[parent_id])
        attempt = _Open(node_id, number, self._attempt_id(node_id, number), parent_span, at, event)
        waiting = self._pending.pop(node_id, None)
        if waiting:
            for span_event in waiting:
                self._attach(attempt, span_event)
        self._open.setdefault(node_id, deque()).append(attempt)

    def _finish_attempt(self, node_id: str, status: str, event: Mapping[str, Any], at: int) -> Span:
        attempts = self._open.get(node_id)
        if attempts:
            attempt = attempts.popleft()
            if not attempts:
                del self._open[node_id]
        else:  # an end with no start of its own: it began its duration before
            number = self._attempts.get(node_id, 0) + 1
            self._attempts[node_id] = number
            duration = event.get("duration_seconds")
            start = at
            if isinstance(duration, int | float) and duration > 0:
                start = max(0, at - _ns(duration))
            attempt = _Open(node_id, number, self._attempt_id(node_id, number), self._root_id,
                            start, None)  # fmt: skip
            for span_event in self._pending.pop(node_id, ()):
                self._attach(attempt, span_event)
        cost = event.get("cost_usd")
        if isinstance(cost, int | float) and cost:
            self._node_cost += cost
            self._node_costs = True
        return self._span(attempt, status, event, at)

    def _span(
        self, attempt: _Open, status: str, end: Mapping[str, Any] | None, end_ns: int
    ) -> Span:
        start_ns = min(attempt.start_ns, end_ns)
        if self._earliest_ns is None or start_ns < self._earliest_ns:
            self._earliest_ns = start_ns
        if self._latest_ns is None or end_ns > self._latest_ns:
            self._latest_ns = end_ns
        start = attempt.start or {}
        index = (end or {}).get("node_index")
        if index is None:
            index = start.get("node_index")
        fields: dict[str, Any] = {
            "node_id": attempt.node_id,
            "node_index": index,
            "status": status,
            "attempt": attempt.number,
        }
        if end is not None:
            fields.update(
                (k, v) for k, v in end.items() if k not in COMMON_FIELDS and k not in fields
            )
        for key in ("parent_id", "depends_on"):
            if key in start and key not in fields:
                fields[key] = start[key]
        attributes = _attributes(fields)
        if attempt.usage is not None:
            attributes += attempt.usage.attributes()
        error = None
        if status == "failed":
            error = str((end or {}).get("error") or "failed")
        return Span(
            trace_id=self._trace_id,
            span_id=attempt.span_id,
            parent_span_id=attempt.parent_span_id,
            name=attempt.node_id,
            start_ns=start_ns,
            end_ns=end_ns,
            attributes=attributes,
            events=attempt.events,
            dropped_events=attempt.dropped_events,
            error=error,
        )

    def _running(self, node_id: str) -> _Open | None:
        """The node's latest attempt still open, if any."""
        attempts = self._open.get(node_id)
        return attempts[-1] if attempts else None

    def _span_event(self, event: Mapping[str, Any], name: str, at: int) -> SpanEvent:
        fields = {k: v for k, v in event.items() if k not in COMMON_FIELDS and k != "message"}
        return SpanEvent(at, name, [("tracebus.event_type", str(event.get("event_type"))),
                                    *_attributes(fields)])  # fmt: skip

    def _attach(self, target: _Open, span_event: SpanEvent) -> None:
        if len(target.events) < self._max_events:
            target.events.append(span_event)
        else:
            target.dropped_events += 1

    def _attempt_id(self, node_id: str, number: int) -> str:
        return self._span_id(f"node/{node_id}/{number}")

    def _span_id(self, what: str) -> str:
        return hashlib.sha256(f"{self._seed}/{what}".encode()).hexdigest()[:16]


def _attributes(values: Mapping[str, Any], prefix: str = "tracebus.") -> Attributes:
    """``values`` as attributes named ``prefix + key``: None left out, a note's ``fields``
    one attribute each, what OTLP cannot hold as is (lists, objects, integers past 64 bits)
    as its JSON."""
    attributes: Attributes = []
    append = attributes.append
    for key, value in values.items():
        kind = type(value)
        if kind is str or kind is float or kind is bool:
            append((prefix + key, value))
        elif kind is int and MIN_INT <= value <= MAX_INT:
            append((prefix + key, value))
        elif value is None:
            continue
        elif key == "fields" and kind is dict:
            attributes += _attributes(value, prefix=f"{prefix}fields.")
        else:
            append((prefix + key, _value(value)))
    return attributes


def _value(value: Any) -> AttributeValue:
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int) and MIN_INT <= value <= MAX_INT:
        return value
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _ns(epoch: float) -> int:
    return round(epoch * 1_000_000_000)


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _real(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
