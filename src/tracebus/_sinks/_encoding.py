"""Trace lines and human log lines, each made once per event, in the writer.

The producers' calls have applied the value rules, so a batch encodes in one call. Should an
event still fail to encode (a payload changed after the call, an event built by hand), it is
encoded alone, then with its free-form fields as their repr, and failing that replaced, in the
batch, by an ``encode_error`` record that keeps its ``seq`` and says why: the writer never
fails on an event.

Log lines are for people: user text in them is passed through ``printable``, so a node id or
a message cannot end a line or drive a terminal.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from itertools import islice
from typing import Any

import msgspec

from .._events import (
    BASE_FIELDS,
    FREE_FORM_FIELDS,
    SEED_LOG_DETAILS,
    EncodeError,
    Event,
    event_type_of,
    event_type_of_kind,
    repr_marker,
)
from .._events import json_encoder as _encoder
from .._exceptions import describe
from .._text import printable, utf8_text

_NOT_DETAILS = BASE_FIELDS | {"node_id", "node_index", "message"}


def encode_trace(events: list[Event]) -> bytes:
    """The JSONL trace lines of a batch, one encoder call for the whole batch. An event that
    cannot be encoded is replaced in ``events`` by its ``encode_error`` record."""
    try:
        return _encoder.encode_lines(events)
    except Exception:
        lines = []
        for index, event in enumerate(events):
            line, record = _encode_one(event)
            if record is not None:
                events[index] = record
            lines.append(line)
        return b"".join(lines)


#: Nodes whose times are encoded in one part of the run's end (see encode_in_parts): a part
#: takes some 0.2 ms, where all of a large run's took milliseconds at once.
NODE_TIMES_PART = 2_000


def encode_in_parts(node_times: dict[str, float]) -> Generator[None, None, msgspec.Raw]:
    """The JSON of ``node_times``, as the encoder makes it, encoded NODE_TIMES_PART nodes at a
    time with a yield after each part."""
    items = iter(node_times.items())
    pieces = [b"{"]
    while part := dict(islice(items, NODE_TIMES_PART)):
        pieces += (_encoder.encode(part)[1:-1], b",")  # '"a":1.0,"b":2.0' within its braces
        yield
    pieces[-1] = b"}"  # each copy of megabytes is felt: the whole is joined once
    return msgspec.Raw(b"".join(pieces))


@contextmanager
def node_times_encoded(events: list[Event], encoded: dict[int, msgspec.Raw]) -> Iterator[None]:
    """While inside, each ``workflow_complete`` at an index of ``encoded`` is replaced in
    ``events`` by a copy holding its ``node_times`` as encoded there, so that its trace and log
    lines (both the same JSON of every node's time, the run's longest) do not encode them
    again; the events are put back on the way out, but for one replaced by its
    ``encode_error`` record."""
    swapped: list[tuple[int, Event, Event]] = []
    for index, raw in encoded.items():
        event = events[index]
        shared: Event = msgspec.structs.replace(event, node_times=raw)
        events[index] = shared
        swapped.append((index, event, shared))
    try:
        yield
    finally:
        for index, original, shared in swapped:
            if events[index] is shared:
                events[index] = original


def _encode_one(event: Event) -> tuple[bytes, EncodeError | None]:
    try:
        return _encoder.encode(event) + b"\n", None
    except Exception:
        pass
    # enc_hook covers unknown types; this covers what it cannot (non-str dict keys of unknown
    # types, cycles): each free-form field replaced by its repr.
    for name in FREE_FORM_FIELDS:
        value = getattr(event, name, msgspec.UNSET)
        if value is not msgspec.UNSET:
            setattr(event, name, repr_marker(value))
    try:
        return _encoder.encode(event) + b"\n", None
    except Exception as exc:
        record = encode_error(event, exc)
        return _encoder.encode(record) + b"\n", record


def encode_error(event: Event, exc: BaseException) -> EncodeError:
    """The record written in place of ``event``, which could not be encoded."""
    node_id = getattr(event, "node_id", None)
    return EncodeError(
        timestamp=utf8_text(str(event.timestamp)),
        epoch_seconds=_finite(event.epoch_seconds),
        pid=event.pid if type(event.pid) is int else 0,
        workflow_id=utf8_text(str(event.workflow_id)),
        run_id=utf8_text(str(event.run_id)),
        seq=event.seq if type(event.seq) is int else 0,
        producer=None if event.producer is None else utf8_text(str(event.producer)),
        failed_event_type=event_type_of(event),
        node_id=None if node_id is None else utf8_text(str(node_id))[:1_024],
        error=utf8_text(describe(exc))[:1_024],
    )


def _finite(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value - value == 0:
        return float(value)
    return 0.0


@cache
def _detail_fields(kind: type[Event]) -> tuple[str, ...]:
    seed = SEED_LOG_DETAILS.get(kind, ())
    own = [f for f in kind.__struct_fields__ if f not in _NOT_DETAILS]
    return (*seed, *(f for f in (*own, "epoch_seconds") if f not in seed))


def log_line(event: Event) -> str:
    """``[timestamp] EVENT_TYPE node_id: message | {details as JSON}``."""
    parts = [f"[{event.timestamp}] {event_type_of(event).upper()}"]
    node_id = getattr(event, "node_id", None)
    if node_id:
        parts.append(f" {node_id}")
    message = getattr(event, "message", None)
    if message:
        parts.append(f": {message}")
    details = {name: getattr(event, name) for name in _detail_fields(type(event))}
    details = {name: value for name, value in details.items() if value is not msgspec.UNSET}
    try:
        encoded = _encoder.encode(details)
    except Exception:
        encoded = _encoder.encode({k: repr_marker(v) for k, v in details.items()})
    return f"{printable(''.join(parts))} | {printable(encoded.decode())}\n"


#: How one event kind becomes a log line: its head (``"[timestamp] EVENT_TYPE node_id:
#: message | "``) and its details, to be encoded with the step's others. One call per event
#: for both, as this runs once per event.
_LogParts = Callable[[Any], tuple[str, msgspec.Struct]]

_log_shapes: dict[type[Event], _LogParts] = {}


def _log_shape(kind: type[Event]) -> _LogParts:
    names = _detail_fields(kind)
    # A Struct with the detail fields in order encodes exactly as log_line's dict does; it is
    # built positionally and never part of a cycle, so the GC need not track it.
    struct = msgspec.defstruct(f"{kind.__name__}Details", [(name, Any) for name in names], gc=False)
    getter = operator.attrgetter(*names)
    values: Callable[[Any], tuple[Any, ...]] = (
        (lambda event: (getter(event),)) if len(names) == 1 else getter
    )
    label = f" {event_type_of_kind(kind).upper()}"
    fields = kind.__struct_fields__
    parts: _LogParts
    # User text in a head is escaped (the timestamp is the writer's: the stamper escapes one
    # that came with the event).
    if "node_id" in fields and "message" in fields:

        def parts(event: Any) -> tuple[str, msgspec.Struct]:
            text = f"[{event.timestamp}]{label}"
            node_id, message = event.node_id, event.message
            if node_id:
                text = f"{text} {node_id if node_id.isprintable() else printable(node_id)}"
            if message:
                text = f"{text}: {message if message.isprintable() else printable(message)}"
            return f"{text} | ", struct(*values(event))

    elif "node_id" in fields:

        def parts(event: Any) -> tuple[str, msgspec.Struct]:
            node_id = event.node_id
            if node_id:
                if not node_id.isprintable():
                    node_id = printable(node_id)
                return f"[{event.timestamp}]{label} {node_id} | ", struct(*values(event))
            return f"[{event.timestamp}]{label} | ", struct(*values(event))

    elif "message" in fields:

        def parts(event: Any) -> tuple[str, msgspec.Struct]:
            message = event.message
            if message:
                if not message.isprintable():
                    message = printable(message)
                return f"[{event.timestamp}]{label}: {message} | ", struct(*values(event))
            return f"[{event.timestamp}]{label} | ", struct(*values(event))

    else:

        def parts(event: Any) -> tuple[str, msgspec.Struct]:
            return f"[{event.timestamp}]{label} | ", struct(*values(event))

    _log_shapes[kind] = parts
    return parts


def encode_log(events: Sequence[Event]) -> str:
    """The log lines of a batch, each as ``log_line`` makes it, with one encoder call for all
    the details."""
    if not events:
        return ""
    shapes = _log_shapes
    heads: list[str] = []
    details: list[msgspec.Struct] = []
    add_head, add_details = heads.append, details.append
    for event in events:
        kind = type(event)
        head, detail = (shapes.get(kind) or _log_shape(kind))(event)
        add_head(head)
        add_details(detail)
    try:
        # JSON strings escape newlines, so each encoded line is one event's details
        text = _encoder.encode_lines(details).decode()
    except Exception:
        return "".join([log_line(event) for event in events])
    bodies = text.split("\n")
    if not text.isascii() or "\x7f" in text:  # JSON leaves DEL, C1 and separators as they are
        bodies = [printable(body) for body in bodies]
    return "\n".join(map(operator.add, heads, bodies)) + "\n"


def encode_log_line(event: Event) -> tuple[bytes, ...]:
    """One event's log line, as ``encode_log`` makes it, in pieces of bytes: for the run's
    end, whose details hold every node's time, without the copies of a step's lines."""
    kind = type(event)
    head, detail = (_log_shapes.get(kind) or _log_shape(kind))(event)
    try:
        body = _encoder.encode(detail)
    except Exception:
        return (encode_log([event]).encode(),)
    if not body.isascii() or b"\x7f" in body:
        return (f"{head}{printable(body.decode())}\n".encode(),)
    return head.encode(), body, b"\n"
