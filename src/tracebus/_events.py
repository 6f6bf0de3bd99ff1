"""The typed events and their schema version.

Each event is a msgspec Struct tagged by ``event_type``. The trace line of an event is its
JSON encoding: the seed observer's field names, details flattened into the entry, plus
``run_id``, ``seq`` and ``schema_version``. Producers fill what is cheap to capture (clock,
pid, ids, references); the writer stamps ``seq`` and ``timestamp`` and the summary fields of
``workflow_complete``/``workflow_error``.
"""

# No ``from __future__ import annotations`` here: msgspec reads these annotations in the
# module named by a class's ``__module__``, which the facade sets to ``tracebus``, so they
# must be objects, not strings.

import hashlib
import numbers
import re
from decimal import Decimal
from functools import cache
from typing import Any, Final, get_args

import msgspec
import msgspec.structs

from ._text import utf8_text

#: Version 2 adds a node's ``parent_id`` and ``depends_on``, and the ``log`` and ``usage``
#: events; a version 1 trace is a version 2 trace without them.
SCHEMA_VERSION = 2


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
    #: The enclosing node (the current node where it started, or ``parent=``); absent from
    #: the trace line for a top-level node.
    parent_id: str | msgspec.UnsetType = msgspec.UNSET
    #: The nodes this one waited for (``depends_on=``); absent unless given.
    depends_on: list[str] | msgspec.UnsetType = msgspec.UNSET


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


class Log(Event, tag="log", kw_only=True):
    """A ``logging`` record (or a warning) emitted during the run, captured."""

    message: str
    node_id: str | None = None
    logger: str
    level: str
    levelno: int
    exception: str | None = None


class Usage(Event, tag="usage", kw_only=True):
    """Tokens (and their cost) one model call spent, for a node or the run."""

    node_id: str | None = None
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: Other counters of the call (cached, reasoning tokens...), by name.
    counters: dict[str, int] = {}


# The run's counts (NodeCounts) are spelled out in both end events, not inherited from a
# base: a base's fields come first, which would change the order of the trace line's keys.
class WorkflowComplete(Event, tag="workflow_complete", kw_only=True):
    cumulative_cost_usd: float | None = None
    nodes_completed: int = 0
    nodes_failed: int = 0
    nodes_skipped: int = 0
    nodes_unfinished: int = 0
    nodes_seen: int = 0
    nodes_retried: int = 0
    attempts_failed: int = 0
    retries: int = 0
    total_time_seconds: float = 0.0
    trace_file: str = ""
    log_file: str = ""
    node_times: dict[str, float] = {}
    #: Per model: ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` and the other
    #: counters of its ``usage`` events; absent from a run without any.
    usage_by_model: dict[str, dict[str, float]] | msgspec.UnsetType = msgspec.UNSET


class WorkflowError(Event, tag="workflow_error", kw_only=True):
    error: str
    nodes_completed: int = 0
    nodes_failed: int = 0
    nodes_skipped: int = 0
    nodes_unfinished: int = 0
    nodes_seen: int = 0
    nodes_retried: int = 0
    attempts_failed: int = 0
    retries: int = 0
    total_time_seconds: float = 0.0


class EncodeError(Event, tag="encode_error", kw_only=True):
    """Written in place of an event the writer could not encode (it keeps the event's
    ``seq``, timestamp and ids); never emitted by a producer."""

    failed_event_type: str
    node_id: str | None = None
    error: str


AnyEvent = (
    WorkflowStart
    | NodeStart
    | NodeSuccess
    | NodeFailure
    | NodeSkipped
    | NodeRetry
    | Note
    | Log
    | Usage
    | WorkflowComplete
    | WorkflowError
)

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


# -- the lists every module derives from -------------------------------------------------------

#: The event classes a producer emits, in the order of a run's life.
EVENT_KINDS: Final[tuple[type[Event], ...]] = get_args(AnyEvent)
#: The event classes a trace can hold: the producers' and the writer's ``EncodeError``.
TRACE_EVENT_KINDS: Final[tuple[type[Event], ...]] = (*EVENT_KINDS, EncodeError)
#: The ``event_type`` of each event a producer emits, in the order of ``EVENT_KINDS``.
EVENT_TYPES: Final[tuple[str, ...]] = tuple(event_type_of_kind(kind) for kind in EVENT_KINDS)
#: The ``event_type`` of each event a trace can hold, in the order of ``TRACE_EVENT_KINDS``.
TRACE_EVENT_TYPES: Final[tuple[str, ...]] = (*EVENT_TYPES, event_type_of_kind(EncodeError))
#: The fields every trace line carries: ``event_type`` and the fields of ``Event`` but
#: ``extra`` (written only when it holds something; a reader shows it with the event's own).
COMMON_FIELDS: Final[frozenset[str]] = frozenset({"event_type", *BASE_FIELDS} - {"extra"})
#: The fields that hold any value a user gives: where JSON or msgpack cannot hold a value,
#: it is stored as its ``repr_marker``.
FREE_FORM_FIELDS: Final[tuple[str, ...]] = ("output_summary", "fields", "extra")
#: What msgspec's encoders raise for a value they cannot encode (an int past 64 bits, a
#: non-str dict key, a cycle, nesting deeper than the interpreter's recursion limit).
ENCODE_ERRORS: Final[tuple[type[Exception], ...]] = (
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
    msgspec.EncodeError,
)


# -- the value rules ---------------------------------------------------------------------------
# Every observer flavour applies them at the call, in EventFactory, before anything is queued;
# ``check_event`` applies them to an event built by hand and ``trace_line_problem`` to a trace
# line read back, so that what is written and what a reader accepts are the same thing.

#: A free-form payload (``output_summary``, a note's ``fields``) or a text (an error, a
#: message, a reason) larger than this, encoded, is stored as a marker: see ``payload_value``.
DEFAULT_MAX_PAYLOAD_BYTES: Final = 64 * 1024
#: How much of an oversized value its marker keeps, in bytes of its encoding.
PREFIX_BYTES: Final = 1_024
#: Durations, costs and delays are finite and at most this in magnitude, so that totals of
#: any number of them stay finite.
MAX_MAGNITUDE: Final = 1e15
#: Whole numbers (indices, counts, attempts) fit in 64 bits, as msgpack and OTLP need.
MIN_INT: Final = -(2**63)
MAX_INT: Final = 2**63 - 1
#: Node ids name rows of per-node tables: they are kept short.
MAX_NODE_ID_CHARS: Final = 1_024
#: A free-form payload nests at most this deep; deeper parts are stored as a ``$repr``.
MAX_DEPTH: Final = 64
#: Epoch seconds from 1970 to the end of year 9999: what a timestamp can show.
MAX_EPOCH: Final = 253_402_300_800.0


def _shown(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= 80 else text[:77] + "..."


def _not_a_str(method: str, field: str, value: object) -> str:
    return f"{method}: {field} must be a str, not {type(value).__name__}: {_shown(value)}"


def real_number(value: object, method: str, field: str) -> float:
    """``value`` as a float: an int, a float or another real number (Decimal, Fraction),
    never a bool or a str.

    Raises TypeError for another type and ValueError for NaN, an infinity, or a magnitude
    over ``MAX_MAGNITUDE``, naming ``method``, ``field`` and the value.
    """
    if type(value) is float:
        number = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise TypeError(
            f"{method}: {field} must be a real number (int, float, Decimal, Fraction), "
            f"not {type(value).__name__}: {_shown(value)}"
        )
    else:
        try:
            number = float(value)
        except (OverflowError, ValueError):
            number = float("nan")
    if not -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE:  # also false for NaN
        raise ValueError(
            f"{method}: {field} must be finite and at most {MAX_MAGNITUDE:g} in magnitude, "
            f"got {_shown(value)}"
        )
    return number


def whole_number(value: object, method: str, field: str) -> int:
    """``value`` as an int (an int or another integral number, never a bool).

    Raises TypeError for another type and ValueError outside 64 bits.
    """
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{method}: {field} must be an int, not {type(value).__name__}: {_shown(value)}"
            )
        value = int(value)
    if not MIN_INT <= value <= MAX_INT:
        raise ValueError(f"{method}: {field} must fit in 64 bits, got {_shown(value)}")
    return value


def check_total_nodes(value: object, where: str = "total_nodes") -> int:
    """Return ``value`` if it is a node count: a non-negative int that fits in 64 bits (a bool
    is not one). The one rule for every observer and for the collector.

    Raises ValueError naming ``where`` and the value otherwise.
    """
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise ValueError(f"{where} must be a non-negative int, got {_shown(value)}")
    return value


def node_id_value(value: object, method: str, field: str = "node_id") -> str:
    """A node id: a str of at most ``MAX_NODE_ID_CHARS`` characters (lone surrogates
    escaped). Raises TypeError for another type, ValueError when longer."""
    if not isinstance(value, str):
        raise TypeError(_not_a_str(method, field, value))
    text = utf8_text(str(value))
    if len(text) > MAX_NODE_ID_CHARS:
        raise ValueError(
            f"{method}: {field} must be at most {MAX_NODE_ID_CHARS} characters, "
            f"got {len(text)}: {_shown(text)}"
        )
    return text


def node_ids_value(value: object, method: str, field: str) -> list[str]:
    """A list of node ids from any iterable of them (not a str itself). Raises TypeError or
    ValueError as ``node_id_value`` does for each."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{method}: {field} must be a list of node ids, not {type(value).__name__}: "
            f"{_shown(value)}"
        )
    return [node_id_value(item, method, f"{field} item") for item in value]


def text_value(value: object, method: str, field: str, limit: int) -> str:
    """A text field (an error, a message, a reason, a hash): a str, lone surrogates escaped,
    and past ``limit`` bytes of UTF-8 cut to a visible marker (see ``truncated_text``).
    Raises TypeError for another type."""
    if not isinstance(value, str):
        raise TypeError(_not_a_str(method, field, value))
    text = utf8_text(str(value))
    if len(text) * 4 > limit:  # a character is at most 4 bytes of UTF-8
        encoded = text.encode("utf-8")
        if len(encoded) > limit:
            return truncated_text(encoded)
    return text


def truncated_text(encoded: bytes) -> str:
    """The marker an oversized text is stored as: its first ``PREFIX_BYTES``, its size and
    its SHA-256 (of its UTF-8 encoding)."""
    prefix = encoded[:PREFIX_BYTES].decode("utf-8", "ignore")
    digest = hashlib.sha256(encoded).hexdigest()
    return f"{prefix}... [truncated by tracebus: {len(encoded)} bytes, sha256 {digest}]"


def repr_marker(obj: Any) -> dict[str, str]:
    """``{"$repr": "<repr of obj>"}``: how a value JSON cannot hold is stored."""
    try:
        text = repr(obj)
    except Exception:  # nested deeper than repr goes, or a bad __repr__
        text = f"<{type(obj).__name__} that cannot be shown>"
    return {"$repr": text}


def _enc_hook(obj: Any) -> dict[str, str]:
    if isinstance(obj, dict):
        # msgspec asks again when our replacement stands where a dict key must: give up on
        # the whole value (the caller stores its repr) instead of looping.
        raise TypeError("value cannot be a JSON object key")
    return repr_marker(obj)


#: The JSON encoder of trace lines and payloads: a value JSON cannot hold becomes its repr.
json_encoder: Final = msgspec.json.Encoder(enc_hook=_enc_hook)
_msgpack_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def payload_value(value: Any, limit: int, encoded: bytes | None = None) -> Any:
    """A free-form payload as it will be stored.

    Usually ``value`` itself. What JSON cannot hold is replaced, visibly: an object by
    ``{"$repr": "<its repr>"}`` (the whole value when a dict key or a cycle is the trouble),
    NaN and the infinities by ``{"$repr": "nan"}``, ``{"$repr": "inf"}``, ``{"$repr": "-inf"}``
    (JSON would make them null), a lone surrogate by its escape, a part nested deeper than
    ``MAX_DEPTH`` by its repr. A payload whose JSON is longer than ``limit`` bytes becomes
    ``{"$truncated": {"bytes": N, "sha256": "<hex of the JSON>", "prefix": "<its start>"}}``.
    Never raises.
    """
    if value is None:
        return None
    if encoded is None:  # else the caller encoded it already
        try:
            encoded = json_encoder.encode(value)
        except Exception:
            value = _clean(value)
            encoded = json_encoder.encode(value)
            return _truncated(encoded) if len(encoded) > limit else value
    if len(encoded) > limit:
        return _truncated(encoded)
    if _may_lose(value, encoded):
        cleaned = _clean(value)
        again = json_encoder.encode(cleaned)
        if again != encoded:
            value, encoded = cleaned, again
    return _truncated(encoded) if len(encoded) > limit else value


def _may_lose(value: Any, encoded: bytes) -> bool:
    """Whether ``encoded`` (the JSON of ``value``) may have lost part of it: a non-finite
    float (written as null), or a part nested deeper than MAX_DEPTH. Answered in C for what
    needs no cleaning; a doubt sends the value to ``_clean``, which knows for sure."""
    if encoded.find(b"null") >= 0 and _has_non_finite(value):
        return True
    return _nests_deeper(encoded, MAX_DEPTH)


# msgpack keeps every float as 0xcb and 8 bytes, big-endian: a NaN or an infinity has all the
# exponent bits set. In UTF-8 text 0xcb is followed by a continuation byte, never these.
_NON_FINITE: Final = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]", re.S)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def _has_non_finite(value: Any) -> bool:
    try:
        packed = _msgpack_encoder.encode(value)
    except Exception:  # an int past 64 bits, say: let _clean look
        return True
    return _NON_FINITE.search(packed) is not None


def _nests_deeper(encoded: bytes, limit: int) -> bool:
    if len(encoded) <= 2 * limit:  # each level takes two brackets
        return False
    brackets = encoded.translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * limit:
        return False
    for _ in range(limit):  # take off the innermost level, limit times
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not brackets:
            return False
    return True  # (or brackets inside strings: _clean tells)


def _truncated(encoded: bytes) -> dict[str, dict[str, Any]]:
    return {
        "$truncated": {
            "bytes": len(encoded),
            "sha256": hashlib.sha256(encoded).hexdigest(),
            "prefix": encoded[:PREFIX_BYTES].decode("utf-8", "ignore"),
        }
    }


def _clean(value: Any) -> Any:
    try:
        plain = msgspec.to_builtins(value, enc_hook=_enc_hook, str_keys=True)
        return _cleaned(plain, 0)
    except ENCODE_ERRORS:
        return _cleaned(repr_marker(value), 0)  # a dict key or a cycle: the whole value


def _cleaned(value: Any, depth: int) -> Any:
    # ``value`` is made of builtins only (msgspec.to_builtins): dicts with str keys, lists...
    kind = type(value)
    if kind is str:
        return utf8_text(value)
    if kind is float:
        return value if value - value == 0.0 else {"$repr": repr(value)}
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            return {"$repr": f"<{kind.__name__} nested deeper than {MAX_DEPTH} levels>"}
        if kind is list:
            return [_cleaned(item, depth + 1) for item in value]
        return {utf8_text(key): _cleaned(item, depth + 1) for key, item in value.items()}
    if isinstance(value, int) and not MIN_INT <= value < 2**64:
        return {"$repr": repr(value)}  # past what msgpack can carry
    return value


# -- the rules of each field, from the events' own annotations ---------------------------------

_REAL, _INT, _TEXT, _NODE_ID, _PAYLOAD, _MAPPING, _TIMES, _NODE_IDS = range(8)

#: The fields that name a node, and the one that names several.
_NODE_ID_FIELDS: Final = ("node_id", "parent_id")
_NODE_IDS_FIELDS: Final = ("depends_on",)


def _rule_of(name: str, annotation: Any) -> tuple[int, bool]:
    """(rule, whether None is allowed) for a field annotated ``annotation``."""
    args = set(get_args(annotation)) or {annotation}
    optional = type(None) in args or msgspec.UnsetType in args
    args -= {type(None), msgspec.UnsetType}
    (base,) = args if len(args) == 1 else (annotation,)
    if name in _NODE_ID_FIELDS:
        return _NODE_ID, optional
    if name in _NODE_IDS_FIELDS:
        return _NODE_IDS, optional
    if base is float:
        return _REAL, optional
    if base is int:
        return _INT, optional
    if base is str:
        return _TEXT, optional
    if base == dict[str, float]:
        return _TIMES, optional
    if base == dict[str, Any]:
        return _MAPPING, optional
    return _PAYLOAD, True


@cache
def _rules(kind: type[Event]) -> tuple[tuple[str, int, bool], ...]:
    return tuple(
        (field.name, *_rule_of(field.name, field.type)) for field in msgspec.structs.fields(kind)
    )


def check_event(event: Event, limit: int, method: str = "emit") -> None:
    """Apply the value rules to an event built by hand, in place (texts escaped, numbers made
    floats, payloads bounded).

    Raises TypeError or ValueError naming the method, the event's field and its value.
    """
    kind = type(event)
    for name, rule, optional in _rules(kind):
        value = getattr(event, name)
        if (optional and value is None) or value is msgspec.UNSET:
            continue
        field = f"{event_type_of_kind(kind)}.{name}"
        if rule == _REAL and name == "epoch_seconds":
            if type(value) is not float:
                value = real_number(value, method, field)
            if not 0.0 <= value < MAX_EPOCH:  # also false for NaN
                raise ValueError(
                    f"{method}: {field} must be a time from 1970 to 9999, got {value!r}"
                )
        elif rule == _REAL:
            value = real_number(value, method, field)
        elif rule == _INT:
            value = whole_number(value, method, field)
        elif rule == _TEXT:
            value = text_value(value, method, field, limit)
        elif rule == _NODE_ID:
            value = node_id_value(value, method, field)
        elif rule == _PAYLOAD:
            value = payload_value(value, limit)
        elif rule == _NODE_IDS:
            value = node_ids_value(value, method, field)
        elif not isinstance(value, dict):
            raise TypeError(
                f"{method}: {field} must be a dict, not {type(value).__name__}: {_shown(value)}"
            )
        elif rule == _MAPPING:
            value = payload_value(value, limit)
        else:  # _TIMES: seconds per node id
            value = {
                node_id_value(key, method, f"{field} key"): real_number(
                    seconds, method, f"{field}[{key!r}]"
                )
                for key, seconds in value.items()
            }
        setattr(event, name, value)
    if kind is WorkflowStart:
        check_total_nodes(event.total_nodes, f"{method}: workflow_start.total_nodes")  # type: ignore[attr-defined]


@cache
def _line_rules() -> dict[str, tuple[int, bool]]:
    known: dict[str, tuple[int, bool]] = {"event_type": (_TEXT, False)}
    for kind in TRACE_EVENT_KINDS:
        for name, rule, optional in _rules(kind):
            known[name] = (rule, optional)
    return known


def trace_line_problem(line: dict[str, Any]) -> str | None:
    """What makes a trace line, decoded, break the value rules (a known field of the wrong
    type, a number out of range, nesting deeper than a payload may), or None.

    Unknown fields (a newer schema's) are not checked; a field that is null counts as
    absent.
    """
    rules = _line_rules()
    for name, value in line.items():
        known = rules.get(name)
        if known is None or value is None:
            continue
        rule = known[0]
        if rule == _REAL:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{name} is not a number"
            if name == "epoch_seconds":
                if not 0.0 <= value < MAX_EPOCH:
                    return f"{name} is out of range ({_shown(value)})"
            elif not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
                return f"{name} is out of range ({_shown(value)})"
        elif rule == _INT:
            if type(value) is not int:
                return f"{name} is not a whole number"
            if not MIN_INT <= value <= MAX_INT:
                return f"{name} is out of range ({_shown(value)})"
        elif rule == _TEXT or rule == _NODE_ID:
            if not isinstance(value, str):
                return f"{name} is not a string"
        elif rule == _NODE_IDS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"{name} is not a list of strings"
        elif rule == _MAPPING or rule == _TIMES:
            if not isinstance(value, dict):
                return f"{name} is not an object"
            if rule == _TIMES:
                for seconds in value.values():
                    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                        return f"{name} holds a time that is not a number"
                    if not -MAX_MAGNITUDE <= seconds <= MAX_MAGNITUDE:
                        return f"{name} holds a time out of range ({_shown(seconds)})"
    return None
