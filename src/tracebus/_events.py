"""The typed events and their schema version.

Each event is a msgspec Struct tagged by ``event_type``. The trace line of an event is its
JSON encoding: the seed observer's field names, details flattened into the entry, plus
``run_id``, ``seq`` and ``schema_version``. Producers fill what is cheap to capture (clock,
pid, ids, references); the writer stamps ``seq`` and ``timestamp`` and the summary fields of
``workflow_complete``/``workflow_error``.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import msgspec.structs

SCHEMA_VERSION = 1


class Event(msgspec.Struct, tag_field="event_type", kw_only=True, gc=False):
    """Fields every event carries."""

    timestamp: str = ""
    epoch_seconds: float
    pid: int
    workflow_id: str
    run_id: str
    seq: int = 0
    schema_version: int = SCHEMA_VERSION
    producer: str | None = None
    #: Fields this schema does not know, sent by a newer remote producer and kept by the
    #: collector; absent from the trace line unless there are some.
    extra: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class WorkflowStart(Event, tag="workflow_start", kw_only=True):
    message: str
    total_nodes: int
    output_dir: str = ""


class NodeStart(Event, tag="node_start", kw_only=True):
    node_id: str
    node_index: int | None = None


class NodeSuccess(Event, tag="node_success", kw_only=True):
    node_id: str
    node_index: int | None = None
    duration_seconds: float
    output_hash: str | None = None
    output_summary: Any = None
    cost_usd: float = 0.0


class NodeFailure(Event, tag="node_failure", kw_only=True):
    node_id: str
    node_index: int | None = None
    duration_seconds: float
    error: str
    cost_usd: float = 0.0


class NodeSkipped(Event, tag="node_skipped", kw_only=True):
    node_id: str
    node_index: int | None = None
    reason: str = ""


class NodeRetry(Event, tag="node_retry", kw_only=True):
    node_id: str
    node_index: int | None = None
    attempt: int
    error: str = ""
    delay_seconds: float = 0.0


class Note(Event, tag="note", kw_only=True):
    message: str
    node_id: str | None = None
    fields: dict[str, Any] = {}


class WorkflowComplete(Event, tag="workflow_complete", kw_only=True):
    cumulative_cost_usd: float | None = None
    nodes_completed: int = 0
    nodes_failed: int = 0
    nodes_skipped: int = 0
    total_time_seconds: float = 0.0
    trace_file: str = ""
    log_file: str = ""
    node_times: dict[str, float] = {}


class WorkflowError(Event, tag="workflow_error", kw_only=True):
    error: str
    nodes_completed: int = 0
    nodes_failed: int = 0
    total_time_seconds: float = 0.0


AnyEvent = (
    WorkflowStart
    | NodeStart
    | NodeSuccess
    | NodeFailure
    | NodeSkipped
    | NodeRetry
    | Note
    | WorkflowComplete
    | WorkflowError
)

NodeEvent = NodeStart | NodeSuccess | NodeFailure | NodeSkipped | NodeRetry

#: Events a ``drop`` overflow policy never drops.
LIFECYCLE_TYPES: tuple[type[Event], ...] = (
    WorkflowStart,
    WorkflowComplete,
    WorkflowError,
    NodeFailure,
)

#: Fields every event has; a log line's ``| {details}`` holds the others.
BASE_FIELDS = frozenset(Event.__struct_fields__)

#: What the seed observer's log lines held in their ``| {details}``, per event type, in its
#: order. A log line's details start with these (common fields among them), then the event's
#: other fields, so a reader of the seed's logs finds every field it knew, where it was.
SEED_LOG_DETAILS: dict[type[Event], tuple[str, ...]] = {
    WorkflowStart: ("workflow_id", "pid", "timestamp", "total_nodes"),
    NodeStart: ("epoch_seconds",),
    NodeSuccess: ("duration_seconds", "output_hash", "epoch_seconds", "output_summary"),
    NodeFailure: ("duration_seconds", "error", "epoch_seconds"),
    WorkflowComplete: (
        "workflow_id",
        "nodes_completed",
        "nodes_failed",
        "total_time_seconds",
        "cumulative_cost_usd",
        "trace_file",
        "log_file",
        "node_times",
        "epoch_seconds",
    ),
    WorkflowError: (
        "workflow_id",
        "error",
        "total_time_seconds",
        "nodes_completed",
        "nodes_failed",
        "epoch_seconds",
    ),
}


def event_type_of(event: Event) -> str:
    """The ``event_type`` tag of an event."""
    return event_type_of_kind(type(event))


def event_type_of_kind(kind: type[Event]) -> str:
    """The ``event_type`` tag of an event class."""
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def check_total_nodes(value: object, where: str = "total_nodes") -> int:
    """Return ``value`` if it is a node count: a non-negative int (a bool is not one).

    Raises ValueError naming ``where`` and the value otherwise.
    """
    if type(value) is not int or value < 0:
        raise ValueError(f"{where} must be a non-negative int, got {value!r}")
    return value


def _float_fields(kind: type[Event]) -> tuple[str, ...]:
    hints = msgspec.structs.fields(kind)
    return tuple(
        field.name
        for field in hints
        if field.type is float or field.type == (float | None) or field.type == dict[str, float]
    )


_FLOAT_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def check_values(event: Event) -> None:
    """Check the values no schema expresses, for an event from outside the process (a remote
    producer may send anything): every number in a float field is finite (JSON has no NaN or
    infinity: the trace would hold ``null``, which cannot be read back as a float), a node id
    is a str, and a ``workflow_start``'s ``total_nodes`` is a node count.

    Raises ValueError (TypeError for a node id that is not a str) naming the event type, the
    field and the value.
    """
    kind = type(event)
    names = _FLOAT_FIELDS.get(kind)
    if names is None:
        names = _FLOAT_FIELDS[kind] = _float_fields(kind)
    for name in names:
        value = getattr(event, name)
        values = value.values() if isinstance(value, dict) else (value,)
        for number in values:
            if number is not None and not math.isfinite(number):
                raise ValueError(
                    f"{event_type_of(event)}: {name} must be a finite number, got {number!r}"
                )
    node_id = getattr(event, "node_id", None)
    if node_id is not None and type(node_id) is not str:
        raise TypeError(f"{event_type_of(event)}: node_id must be a str, got {node_id!r}")
    if kind is WorkflowStart:
        check_total_nodes(event.total_nodes, "workflow_start: total_nodes")  # type: ignore[attr-defined]
