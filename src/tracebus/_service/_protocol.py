"""The collector's messages and their msgpack encoding, whatever carries them.

A client sends ``Hello`` once, then ``Batch`` and ``StatusRequest`` messages. The service
answers the hello with ``Welcome`` (or an ``ErrorReply``), batches with a cumulative ``Ack``
(or an ``ErrorReply`` naming the batch), a status request with a ``StatusReply``.

Events are the core's typed structs, checked field by field on decoding: a wrong type is
rejected. A field the schema does not know (a newer producer's) is kept, as sent, in the
event's ``extra`` mapping, which the trace line carries. msgspec can neither collect unknown
fields nor be told per decoder to refuse them, so events are first decoded as strict twins of
the core types that refuse unknown fields; only a batch that trips them takes the slower path
that sorts known fields from unknown ones.
"""

from __future__ import annotations

import types
from typing import Any, Final, NamedTuple, Union, cast

import msgspec

from .._events import (
    ENCODE_ERRORS,
    EVENT_KINDS,
    FREE_FORM_FIELDS,
    AnyEvent,
    Event,
    WorkflowComplete,
    WorkflowError,
    WorkflowStart,
    check_event,
    event_type_of_kind,
    repr_marker,
)
from .._exceptions import InvalidIdError, ProtocolError
from .._layout import validate_id
from ._codes import ErrorCode
from ._limits import MAX_FRAME_BYTES

#: The bound ``check_event`` applies to a remote event's free-form payloads: the producer
#: bounded them already at its own ``max_payload_bytes``; a frame bounds the rest.
_WIRE_PAYLOAD_BYTES: Final = MAX_FRAME_BYTES


class Hello(msgspec.Struct, tag_field="kind", tag="hello", kw_only=True):
    protocol: int
    producer: str
    token: str | None = None
    client: str = ""


class Batch(msgspec.Struct, tag_field="kind", tag="batch", kw_only=True):
    id: int
    workflow_id: str
    run_id: str
    events: list[AnyEvent] = []


class StatusRequest(msgspec.Struct, tag_field="kind", tag="status", kw_only=True):
    pass


class Welcome(msgspec.Struct, tag_field="kind", tag="welcome", kw_only=True):
    protocol: int
    server: str
    max_frame_bytes: int
    max_events_per_frame: int


class Ack(msgspec.Struct, tag_field="kind", tag="ack", kw_only=True):
    """Every batch up to ``id`` is settled: written, or refused by an earlier error."""

    id: int


class ErrorReply(msgspec.Struct, tag_field="kind", tag="error", kw_only=True):
    code: str
    message: str
    id: int | None = None  # the batch it is about
    fatal: bool = False  # the service closes the connection after it


class StatusReply(msgspec.Struct, tag_field="kind", tag="status", kw_only=True):
    counters: dict[str, Any]


def software() -> str:
    """``tracebus {version}``, as hello and welcome name their side."""
    from .._version import __version__

    return f"tracebus {__version__}"


ClientMessage = Hello | Batch | StatusRequest
ServerMessage = Welcome | Ack | ErrorReply | StatusReply

# -- strict twins ------------------------------------------------------------------------------

_EVENT_TYPES: dict[str, type[Event]] = {event_type_of_kind(kind): kind for kind in EVENT_KINDS}
# A twin adds no field, so its instances have the core class's layout and can be relabelled
# as the core class after decoding (the writer dispatches on exact types).
_CORE_OF: dict[type[Event], type[Event]] = {
    types.new_class(f"Strict{kind.__name__}", (kind,), {"forbid_unknown_fields": True}): kind
    for kind in _EVENT_TYPES.values()
}
_StrictEvent: Any = Union[tuple(_CORE_OF)]  # noqa: UP007 - built at run time


class _StrictBatch(msgspec.Struct, tag_field="kind", tag="batch", kw_only=True):
    id: int
    workflow_id: str
    run_id: str
    events: list[_StrictEvent] = []


class _LooseBatch(msgspec.Struct, tag_field="kind", tag="batch", kw_only=True):
    id: int
    workflow_id: str
    run_id: str
    events: list[Any] = []


_fast_decoder = msgspec.msgpack.Decoder(Hello | _StrictBatch | StatusRequest)
_loose_decoder = msgspec.msgpack.Decoder(Hello | _LooseBatch | StatusRequest)
_server_decoder = msgspec.msgpack.Decoder(ServerMessage)


_encoder = msgspec.msgpack.Encoder(enc_hook=repr_marker)


def encode(message: ClientMessage | ServerMessage) -> bytes:
    """The msgpack body of a message; an unencodable value inside an event becomes
    ``{"$repr": ...}``, as in the trace."""
    try:
        return _encoder.encode(message)
    except ENCODE_ERRORS:
        if not isinstance(message, Batch):
            raise
        for event in message.events:
            _make_encodable(event)
        return _encoder.encode(message)


def _make_encodable(event: Event) -> None:
    for name in FREE_FORM_FIELDS:
        value = getattr(event, name, msgspec.UNSET)
        if value is msgspec.UNSET:
            continue
        try:
            _encoder.encode(value)
        except ENCODE_ERRORS:
            setattr(event, name, repr_marker(value))


def decode_client_message(body: bytes) -> ClientMessage:
    """Decode what a client sent.

    Raises ProtocolError: ``bad_frame`` when the body is not a message, ``invalid_event``
    when an event in a batch has a wrong type, misses a field or has an unknown event type.
    """
    try:
        message: Hello | _StrictBatch | StatusRequest = _fast_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return _decode_slowly(body)
    if isinstance(message, _StrictBatch):
        events = message.events
        core_of = _CORE_OF
        for event in events:
            event.__class__ = core_of[type(event)]
        return Batch(
            id=message.id, workflow_id=message.workflow_id, run_id=message.run_id, events=events
        )
    return message


def _decode_slowly(body: bytes) -> ClientMessage:
    try:
        message: Hello | _LooseBatch | StatusRequest = _loose_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"not a message: {_first_line(exc)}") from None
    if not isinstance(message, _LooseBatch):
        return message
    events = [cast(AnyEvent, _event_from(raw, index)) for index, raw in enumerate(message.events)]
    return Batch(
        id=message.id, workflow_id=message.workflow_id, run_id=message.run_id, events=events
    )


def _event_from(raw: Any, index: int) -> Event:
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_EVENT, f"event {index} is not a map")
    kind = _EVENT_TYPES.get(raw.get("event_type"))  # type: ignore[arg-type]
    if kind is None:
        raise ProtocolError(ErrorCode.INVALID_EVENT, f"event {index}: unknown event_type")
    fields = kind.__struct_fields__
    known: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "event_type" or name in fields:
            known[name] = value
        elif isinstance(name, str):
            unknown[name] = value
        else:
            raise ProtocolError(
                ErrorCode.INVALID_EVENT, f"event {index}: a field name is not a string"
            )
    try:
        event = msgspec.convert(known, kind)
    except (msgspec.ValidationError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.INVALID_EVENT, f"event {index}: {_first_line(exc)}") from None
    if unknown:
        sent = event.extra if isinstance(event.extra, dict) else {}
        event.extra = {**sent, **unknown}
    return event


class _BatchHead(msgspec.Struct, tag_field="kind", tag="batch"):
    id: int


_head_decoder = msgspec.msgpack.Decoder(_BatchHead)


def batch_id_of(body: bytes) -> int | None:
    """The ``id`` of a batch whose events did not decode, so that its refusal names it (a
    refusal naming no batch would let the next acknowledgement settle it as written)."""
    try:
        return _head_decoder.decode(body).id
    except (msgspec.DecodeError, RecursionError):
        return None


def decode_server_message(body: bytes) -> ServerMessage:
    """Decode what the service sent. Raises ProtocolError (``bad_frame``)."""
    try:
        message: ServerMessage = _server_decoder.decode(body)
        return message
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"not a service message: {_first_line(exc)}"
        ) from None


class Checked(NamedTuple):
    """What ``check_batch`` found out about a batch."""

    starts: bool  # holds a workflow_start
    ends: bool  # holds a workflow_complete or workflow_error
    top_seq: int  # the highest seq in it (0 for an empty batch)
    low_seq: int  # the lowest (0 for an empty batch)


def check_batch(batch: Batch, producer: str) -> Checked:
    """Check a decoded batch against the rules no schema expresses.

    Raises ProtocolError: ``invalid_id`` for an unsafe workflow or run id (it would name
    files), ``invalid_event`` for an event of another run or producer, a ``seq`` below 1,
    or a value that breaks the rules every observer applies at the call (``check_event``: a
    time no timestamp can show, a NaN or infinite number, a negative ``total_nodes``...), so
    that the trace holds only what the readers and a resume read back.
    """
    try:
        validate_id(batch.workflow_id, "workflow_id")
        validate_id(batch.run_id, "run_id")
    except InvalidIdError as exc:
        raise ProtocolError(ErrorCode.INVALID_ID, str(exc)) from None
    workflow_id, run_id = batch.workflow_id, batch.run_id
    starts = ends = False
    top = 0
    low = batch.events[0].seq if batch.events else 0
    for index, event in enumerate(batch.events):
        if event.workflow_id != workflow_id or event.run_id != run_id:
            raise ProtocolError(ErrorCode.INVALID_EVENT, f"event {index} belongs to another run")
        if event.producer != producer:
            raise ProtocolError(
                ErrorCode.INVALID_EVENT,
                f"event {index} has producer {event.producer!r}, not {producer!r}",
            )
        seq = event.seq
        if seq < 1:
            raise ProtocolError(ErrorCode.INVALID_EVENT, f"event {index}: seq must be at least 1")
        if seq > top:
            top = seq
        elif seq < low:
            low = seq
        try:
            check_event(event, _WIRE_PAYLOAD_BYTES, f"event {index}")
        except (ValueError, TypeError) as exc:
            raise ProtocolError(ErrorCode.INVALID_EVENT, str(exc)) from None
        kind = type(event)
        if kind is WorkflowStart:
            starts = True
        elif kind is WorkflowComplete or kind is WorkflowError:
            ends = True
    return Checked(starts, ends, top, low)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
