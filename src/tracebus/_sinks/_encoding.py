"""Trace lines and human log lines, each made once per event, in the writer."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NamedTuple

import msgspec

from .._events import BASE_FIELDS, SEED_LOG_DETAILS, Event, event_type_of, event_type_of_kind


def _as_repr(obj: Any) -> dict[str, str]:
    # JSON cannot hold it: keep its repr, flagged so a reader can tell it apart from a string.
    try:
        text = repr(obj)
    except Exception:  # nested deeper than repr goes (e.g. from a remote producer), a bad __repr__
        text = f"<{type(obj).__name__} that cannot be shown>"
    return {"$repr": text}


def _enc_hook(obj: Any) -> dict[str, str]:
    if isinstance(obj, dict):
        # msgspec asks again when our replacement stands where a dict key must: give up on
        # the whole value (the caller stores its repr) instead of looping.
        raise TypeError("value cannot be a JSON object key")
    return _as_repr(obj)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)

_NOT_DETAILS = BASE_FIELDS | {"node_id", "node_index", "message"}


def encode_trace(events: Sequence[Event]) -> bytes:
    """The JSONL trace lines of a batch, one encoder call for the whole batch."""
    try:
        return _encoder.encode_lines(events)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return b"".join(_encode_one(event) for event in events)


def _encode_one(event: Event) -> bytes:
    try:
        return _encoder.encode(event) + b"\n"
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        # enc_hook covers unknown types; this covers what it cannot (e.g. non-str dict keys
        # of unknown types, cycles): replace each free-form field by its repr.
        for name in ("output_summary", "fields", "extra"):
            value = getattr(event, name, msgspec.UNSET)
            if value is not msgspec.UNSET:
                setattr(event, name, _as_repr(value))
        return _encoder.encode(event) + b"\n"


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
    try:
        encoded = _encoder.encode(details)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        encoded = _encoder.encode({k: _as_repr(v) for k, v in details.items()})
    parts.append(" | ")
    parts.append(encoded.decode())
    parts.append("\n")
    return "".join(parts)


class _LogShape(NamedTuple):
    """How one event kind becomes a log line, worked out once per kind."""

    head: Callable[[Any], str]  # "[timestamp] EVENT_TYPE node_id: message | "
    details: Callable[[Any], msgspec.Struct]


_log_shapes: dict[type[Event], _LogShape] = {}


def _log_shape(kind: type[Event]) -> _LogShape:
    names = _detail_fields(kind)
    # A Struct with the detail fields in order encodes exactly as log_line's dict does; it is
    # built positionally and never part of a cycle, so the GC need not track it.
    struct = msgspec.defstruct(f"{kind.__name__}Details", [(name, Any) for name in names], gc=False)
    values = operator.attrgetter(*names)
    details: Callable[[Any], msgspec.Struct]
    if len(names) == 1:
        details = lambda event: struct(values(event))  # noqa: E731
    else:
        details = lambda event: struct(*values(event))  # noqa: E731
    label = f" {event_type_of_kind(kind).upper()}"
    fields = kind.__struct_fields__
    head: Callable[[Any], str]
    if "node_id" in fields and "message" in fields:

        def head(event: Any) -> str:
            text = f"[{event.timestamp}]{label}"
            if event.node_id:
                text = f"{text} {event.node_id}"
            return f"{text}: {event.message} | " if event.message else f"{text} | "

    elif "node_id" in fields:

        def head(event: Any) -> str:
            if event.node_id:
                return f"[{event.timestamp}]{label} {event.node_id} | "
            return f"[{event.timestamp}]{label} | "

    elif "message" in fields:

        def head(event: Any) -> str:
            if event.message:
                return f"[{event.timestamp}]{label}: {event.message} | "
            return f"[{event.timestamp}]{label} | "

    else:

        def head(event: Any) -> str:
            return f"[{event.timestamp}]{label} | "

    shape = _log_shapes[kind] = _LogShape(head, details)
    return shape


def encode_log(events: Sequence[Event]) -> str:
    """The log lines of a batch, each as ``log_line`` makes it, with one encoder call for all
    the details."""
    if not events:
        return ""
    shapes = _log_shapes
    heads: list[str] = []
    details: list[msgspec.Struct] = []
    for event in events:
        kind = type(event)
        shape = shapes.get(kind) or _log_shape(kind)
        heads.append(shape.head(event))
        details.append(shape.details(event))
    try:
        # JSON strings escape newlines, so each encoded line is one event's details
        bodies = _encoder.encode_lines(details).decode().split("\n")
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return "".join([log_line(event) for event in events])
    return "\n".join(map(operator.add, heads, bodies)) + "\n"
