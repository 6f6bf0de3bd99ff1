"""The body of one JetStream message: a batch of one producer's events of one run, msgpack."""

from __future__ import annotations

from typing import Any

import msgspec

from .._events import AnyEvent, Event


def _as_repr(obj: Any) -> dict[str, str]:
    return {"$repr": repr(obj)}


_encoder = msgspec.msgpack.Encoder(enc_hook=_as_repr)
_decoder = msgspec.msgpack.Decoder(list[AnyEvent])


def encode_events(events: list[Event]) -> bytes:
    """The message body; a value msgpack cannot hold becomes ``{"$repr": ...}``, as in the
    trace."""
    try:
        return _encoder.encode(events)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        for event in events:
            for name in ("output_summary", "fields"):
                value = getattr(event, name, msgspec.UNSET)
                if value is msgspec.UNSET:
                    continue
                try:
                    _encoder.encode(value)
                except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
                    setattr(event, name, _as_repr(value))
        return _encoder.encode(events)


def decode_events(body: bytes) -> list[Event]:
    """The events of a message body. Raises msgspec.DecodeError (a ValueError) for a body that
    is not a list of events."""
    events: list[Event] = list(_decoder.decode(body))
    return events


def message_id(run_id: str, producer: str, first_seq: int) -> str:
    """The ``Nats-Msg-Id`` of the message whose events start at ``first_seq``."""
    return f"{run_id}:{producer}:{first_seq}"
