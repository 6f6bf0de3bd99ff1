"""The line ``tracebus tail`` prints for an event: ``HH:MM:SS.mmm  event_type  what happened``.

An event is a ``TailLine``, the typed struct a block of trace lines decodes into, or a dict
(``decode_line``'s), made a TailLine to be shown. A TailLine has a field for every field any
event type has, typed as ``_lines`` types them (decoding is checking) and unset where the
line has no such field, so that a field that is absent and one that is null show as they
do in a dict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import msgspec

from .._events import COMMON_FIELDS
from .._text import one_line, printable
from ._lines import line_types

_WIDTH = len("workflow_complete")
_LOUD = frozenset({"node_failure", "workflow_error", "encode_error"})
_UNSET: Any = msgspec.UNSET
#: The characters that ``printable`` leaves as they are, and a newline.
_PLAIN = bytes(range(0x20, 0x7F)) + b"\n"
_MILLISECONDS = tuple(f"{n:03d}" for n in range(1000))
_SECONDS: dict[float, str] = {}
#: Seconds kept off a millisecond's edges by the spans of ``_clock_span``: an epoch below
#: 2**32 and a sum with it are exact to under a microsecond, so an epoch in the span rounds
#: to a microsecond of that millisecond.
_MARGIN = 2e-6
_modf = math.modf


class ShownFields(Protocol):
    """The fields a line shows, named for the type checker: ``TailLine`` has them all (a
    test checks it), typed by ``line_types()``."""

    event_type: Any
    epoch_seconds: Any
    timestamp: Any
    workflow_id: Any
    run_id: Any
    total_nodes: Any
    node_id: Any
    node_index: Any
    duration_seconds: Any
    cost_usd: Any
    output_hash: Any
    error: Any
    reason: Any
    attempt: Any
    delay_seconds: Any
    message: Any
    fields: Any
    level: Any
    logger: Any
    exception: Any
    model: Any
    input_tokens: Any
    output_tokens: Any
    counters: Any
    cumulative_cost_usd: Any
    nodes_completed: Any
    nodes_failed: Any
    nodes_skipped: Any
    total_time_seconds: Any
    failed_event_type: Any


#: Fields that the value rules take as any payload but a line shows as an object's items.
_OBJECTS = frozenset({"counters"})
#: Its fields in the order the writer writes them: the decoder finds each key at once.
TailLine: type[ShownFields] = msgspec.defstruct(  # type: ignore[assignment]
    "TailLine",
    [
        (name, (dict[str, Any] | None if name in _OBJECTS else kind) | msgspec.UnsetType, _UNSET)
        for name, kind in line_types().items()
    ],
    gc=False,
)
_NAMES = frozenset(line_types())

#: A trace line as a TailLine, or as a dict.
Event = ShownFields | Mapping[str, Any]


def format_event(event: Event) -> str:
    """``HH:MM:SS.mmm  event_type  what happened``; failures and errors in capitals. One
    line, its control characters escaped (``printable``). An event of a type it does not
    know shows its own fields as JSON: it must be a dict (``SHOWN_TYPES`` names the others)."""
    return format_events([event])[:-1]


def format_events(events: list[Event], plain: bool = False) -> str:
    """The lines of ``events`` (``format_event``'s), each ending with a newline. With
    ``plain``, the caller vouches that every text in the events is printable ASCII
    (``plain_json``): the lines are not searched for characters to escape."""
    lines: list[str] = []
    append, what_of, labels, struct = lines.append, _WHAT.get, _LABELS, TailLine
    start = end = 0.0  # the clock text of the last line shows every epoch in [start, end)
    clock = ""
    for event in events:
        line = event if type(event) is struct else as_line(event)
        kind = line.event_type
        what = what_of(kind)
        if what is None:
            append(_unknown(event, line))
            continue
        epoch = line.epoch_seconds
        if type(epoch) is not float or not start <= epoch < end:
            clock, start, end = _clock_span(line)
        append(f"{clock}  {labels[kind]}  {what(line)}".rstrip())
    text = "\n".join(lines) + "\n" if lines else ""
    # one check of the whole text spares a check of each line, in the usual case
    if plain or (text.isascii() and not text.encode("ascii").translate(None, _PLAIN)):
        return text
    return "".join(printable(line) + "\n" for line in lines)


def plain_json(data: bytes) -> bool:
    """Whether every text that JSON ``data`` decodes to is printable ASCII: no escape, no
    byte past ASCII, no DEL (JSON has no raw control character in a string)."""
    return data.isascii() and b"\\" not in data and b"\x7f" not in data


def _unknown(event: Event, line: ShownFields) -> str:
    """The line of an event of a type without a line of its own: its fields as JSON."""
    assert isinstance(event, Mapping), "only a dict holds an unknown event's fields"
    kind = str(_given(line.event_type, "?"))
    text = _json({k: v for k, v in event.items() if k not in COMMON_FIELDS})
    return f"{_clock_span(line)[0]}  {_label(kind)}  {text}".rstrip()


def _label(kind: str) -> str:
    """The event type as its line shows it: padded to the longest, loud for failures."""
    return (kind.upper() if kind in _LOUD else kind).ljust(_WIDTH)


def as_line(event: Event) -> ShownFields:
    """The event as a TailLine (a dict's fields that no event type has are left out)."""
    if not isinstance(event, Mapping):
        return event
    return TailLine(**{name: value for name, value in event.items() if name in _NAMES})


def shown_problem(event: Mapping[str, Any]) -> str | None:
    """What keeps a line that the value rules accept from being shown field by field (a
    payload its line shows as an object's items that is not an object), or None."""
    if event.get("event_type") not in _WHAT:
        return None
    for name in _OBJECTS:
        value = event.get(name)
        if value is not None and not isinstance(value, dict):
            return f"{name} is not an object"
    return None


def _workflow_start(e: ShownFields) -> str:
    run = f" (run {e.run_id})" if e.run_id else ""
    return f"{_given(e.workflow_id, '')}: {_given(e.total_nodes, '?')} nodes{run}"


def _node_start(e: ShownFields) -> str:
    node = e.node_id
    if type(node) is not str:
        node = str(_given(node, ""))
    index = e.node_index
    if index is None or index is _UNSET:
        return node
    return f"{node} [{index}]"


def _node_success(e: ShownFields) -> str:
    # the helpers written out: this is most of a run's lines
    node = e.node_id
    if type(node) is not str:
        node = str(_given(node, ""))
    seconds = e.duration_seconds
    if type(seconds) is float or type(seconds) is int:
        took = f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"
    else:
        took = ""
    cost = e.cost_usd
    spent = f"${cost:.6f}" if (type(cost) is float or type(cost) is int) and cost > 0 else ""
    hashed = e.output_hash
    return " ".join(filter(None, (node, took, spent, f"hash {hashed}" if hashed else "")))


def _node_failure(e: ShownFields) -> str:
    return f"{_node(e)} {_duration(e.duration_seconds)}: {_line(e.error)}"


def _node_skipped(e: ShownFields) -> str:
    return _node(e) + (f": {_line(e.reason)}" if e.reason else "")


def _node_retry(e: ShownFields) -> str:
    delay = e.delay_seconds
    wait = f" in {delay:g}s" if _positive(delay) else ""
    error = f": {_line(e.error)}" if e.error else ""
    return f"{_node(e)} attempt {_given(e.attempt, '?')}{wait}{error}"


def _note(e: ShownFields) -> str:
    extra = f" {_json(e.fields)}" if e.fields else ""
    return f"{_owner(e)}{_line(e.message)}{extra}"


def _log(e: ShownFields) -> str:
    said = f"{_given(e.level, '?')} {_given(e.logger, '?')}: {_line(e.message)}"
    exception = str(e.exception or "").rstrip()
    # a traceback's last line names the exception and its message
    raised = f" ({_line(exception.rpartition(chr(10))[2])})" if exception else ""
    return f"{_owner(e)}{said}{raised}"


def _usage(e: ShownFields) -> str:
    parts = [f"{_given(e.input_tokens, 0)} in", f"{_given(e.output_tokens, 0)} out"]
    counters = e.counters
    if isinstance(counters, dict):  # else refused by shown_problem, where it is asked
        parts += [f"{n} {name}" for name, n in sorted(counters.items())]
    spent = f", ${e.cost_usd:.6f}" if _positive(e.cost_usd) else ""
    return f"{_owner(e)}{_given(e.model, '?')}: {', '.join(parts)} tokens{spent}"


def _workflow_complete(e: ShownFields) -> str:
    cost = e.cumulative_cost_usd
    return (
        f"{_given(e.nodes_completed, '?')} succeeded, {_given(e.nodes_failed, 0)} failed, "
        f"{_given(e.nodes_skipped, 0)} skipped in {_duration(e.total_time_seconds)}"
        + (f", ${cost:.4f}" if _positive(cost) else "")
    )


def _workflow_error(e: ShownFields) -> str:
    return _line(e.error)


def _encode_error(e: ShownFields) -> str:
    owner = f"{_node(e)} " if e.node_id else ""
    return f"{owner}({_given(e.failed_event_type, '?')} not written): {_line(e.error)}"


#: What each event type's line says after its type.
_WHAT: dict[str, Callable[[ShownFields], str]] = {
    "workflow_start": _workflow_start,
    "node_start": _node_start,
    "node_success": _node_success,
    "node_failure": _node_failure,
    "node_skipped": _node_skipped,
    "node_retry": _node_retry,
    "note": _note,
    "log": _log,
    "usage": _usage,
    "workflow_complete": _workflow_complete,
    "workflow_error": _workflow_error,
    "encode_error": _encode_error,
}
SHOWN_TYPES = frozenset(_WHAT)
_LABELS = {kind: _label(kind) for kind in _WHAT}


def _given(value: Any, default: Any) -> Any:
    """A field's value, as ``dict.get(name, default)`` gives it."""
    return default if value is _UNSET else value


def _node(e: ShownFields) -> str:
    node = e.node_id
    return node if type(node) is str else str(_given(node, ""))


def _owner(e: ShownFields) -> str:
    return f"[{e.node_id}] " if e.node_id else ""


def _clock_span(line: ShownFields) -> tuple[str, float, float]:
    """``HH:MM:SS.mmm`` of the line's epoch (else its timestamp), and the span of epochs
    that show the same: within its millisecond, by a margin above the float error of an
    epoch below 2**32 (none for the others, and for a timestamp)."""
    epoch = line.epoch_seconds
    if type(epoch) is float or type(epoch) is int:
        try:
            # as datetime.fromtimestamp rounds: to the microsecond, half to even
            fraction, whole = _modf(epoch)
            micro = round(fraction * 1e6)
        except (OverflowError, ValueError):
            return str(_given(line.timestamp, "?")), 0.0, 0.0
        if micro >= 1_000_000:
            whole, micro = whole + 1, micro - 1_000_000
        elif micro < 0:
            whole, micro = whole - 1, micro + 1_000_000
        second = _SECONDS.get(whole) or _second(whole)
        if second is not None:
            millisecond = micro // 1000
            clock = second + _MILLISECONDS[millisecond]
            if not 0 <= whole < 2**32:
                return clock, 0.0, 0.0
            low = whole + millisecond / 1000
            return clock, low + _MARGIN, low + (0.001 - _MARGIN)
    return str(_given(line.timestamp, "?")), 0.0, 0.0


def _second(whole: float) -> str | None:
    """``HH:MM:SS.`` of a whole second in local time, kept (a run's events share their
    seconds); None when it is not in local time's range."""
    try:
        second = datetime.fromtimestamp(whole).strftime("%H:%M:%S.")
    except (OverflowError, ValueError, OSError):
        return None
    if len(_SECONDS) >= 4096:
        _SECONDS.clear()
    _SECONDS[whole] = second
    return second


def _duration(value: Any) -> str:
    if type(value) is not float and type(value) is not int:
        return ""
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _positive(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and value > 0


def _line(value: Any) -> str:
    return one_line(str(value if value is not None and value is not _UNSET else ""))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)
