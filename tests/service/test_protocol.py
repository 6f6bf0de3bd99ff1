"""Decoding and checking what clients send."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracebus import NodeStart, Note, ProtocolError
from tracebus._factory import EventFactory
from tracebus._service._protocol import (
    Batch,
    Hello,
    check_batch,
    decode_client_message,
    encode,
)

from .conftest import numbered

EVENTS = EventFactory("step_01_p", "run", "me")


def _batch(*events: Any, workflow_id: str = "step_01_p", run_id: str = "run") -> Batch:
    return Batch(id=1, workflow_id=workflow_id, run_id=run_id, events=list(events))


def _raw(*events: dict[str, Any]) -> bytes:
    message = {"kind": "batch", "id": 1, "workflow_id": "step_01_p", "run_id": "run"}
    return msgspec.msgpack.encode({**message, "events": list(events)})


def test_events_decode_as_the_core_types() -> None:
    sent = numbered([EVENTS.node_start("a", 0), EVENTS.note("m", None, {"k": [1]})], "me")
    got = decode_client_message(encode(_batch(*sent)))
    assert isinstance(got, Batch)
    assert type(got.events[0]) is NodeStart  # exactly: the writer dispatches on it
    assert got.events == sent
    assert check_batch(got, "me")[:2] == (False, False)  # and the highest seq


def test_unknown_fields_go_to_extra_and_wrong_types_are_refused() -> None:
    event = msgspec.to_builtins(numbered([EVENTS.node_start("a", 0)], "me")[0])
    got = decode_client_message(_raw({**event, "gpu": "A100", "extra": {"sent": 1}}))
    assert isinstance(got, Batch)
    assert got.events[0].extra == {"sent": 1, "gpu": "A100"}
    with pytest.raises(
        ProtocolError, match=r"event 0: Expected `int \| null`, got `str` - at `\$.node_index`"
    ) as bad:
        decode_client_message(_raw({**event, "node_index": "one"}))
    assert bad.value.code == "invalid_event"
    with pytest.raises(ProtocolError, match="unknown event_type"):
        decode_client_message(_raw({**event, "event_type": "node_explode"}))
    with pytest.raises(ProtocolError, match="bad_frame"):
        decode_client_message(b"\xc1 not msgpack")


@pytest.mark.parametrize(
    ("workflow_id", "run_id"),
    [("../etc", "run"), ("step_01_p", "a/b"), (".hidden", "run"), ("", "run"), ("w", "x" * 201)],
)
def test_ids_that_could_name_a_path_are_refused(workflow_id: str, run_id: str) -> None:
    with pytest.raises(ProtocolError) as bad:
        check_batch(_batch(workflow_id=workflow_id, run_id=run_id), "me")
    assert bad.value.code == "invalid_id"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"producer": "other"}, "has producer 'other', not 'me'"),
        ({"run_id": "run2"}, "belongs to another run"),
        ({"seq": 0}, "seq must be at least 1"),
        ({"epoch_seconds": float("nan")}, "epoch_seconds must be a time from 1970 to 9999"),
        ({"epoch_seconds": -1.0}, "epoch_seconds must be a time from 1970 to 9999"),
        ({"epoch_seconds": 1e12}, "epoch_seconds must be a time from 1970 to 9999"),
    ],
)
def test_events_that_break_the_rules_are_refused(change: dict[str, Any], message: str) -> None:
    event = numbered([EVENTS.node_start("a", 0)], "me")[0]
    for name, value in change.items():
        setattr(event, name, value)
    with pytest.raises(ProtocolError, match=message):
        check_batch(_batch(event), "me")


def test_batch_flags_start_and_end() -> None:
    events = numbered([EVENTS.workflow_start(1, ""), EVENTS.workflow_complete(None)], "me")
    assert check_batch(_batch(*events), "me")[:2] == (True, True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_protocol_error(body: bytes) -> None:
    try:
        decode_client_message(body)
    except ProtocolError:
        pass


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(NodeStart.__struct_fields__) + ["zz"]), _values))
def test_any_event_shape_decodes_or_raises_protocol_error(fields: dict[str, Any]) -> None:
    body = _raw({"event_type": "node_start", **fields})
    try:
        got = decode_client_message(body)
    except ProtocolError:
        return
    assert isinstance(got, Batch) and isinstance(got.events[0], NodeStart)
    try:
        check_batch(got, "me")
    except ProtocolError:
        pass


def test_hello_roundtrip() -> None:
    hello = Hello(protocol=1, producer="me", token="t")
    assert decode_client_message(encode(hello)) == hello


class _Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_value_without_a_repr_is_sent_as_a_marker_not_an_error() -> None:
    note = numbered([EVENTS.note("m", None, {})], "me")[0]
    note.fields = {"value": _Unshowable()}
    got = decode_client_message(encode(_batch(note)))
    assert isinstance(got, Batch) and isinstance(got.events[0], Note)
    assert got.events[0].fields == {"value": {"$repr": "<_Unshowable that cannot be shown>"}}
