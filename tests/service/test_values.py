"""No value blocks a run for good: the service refuses what its trace could not give back,
with the rules of the process, and a run whose trace holds such a value still resumes."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import msgspec
import pytest

import tracebus
from tracebus._factory import EventFactory
from tracebus._service._protocol import Ack, ErrorReply

from .conftest import RawClient, Service, batch, numbered, run_files

WF, RUN = "step_01_values", "values-run"


def _with(event: Any, **values: Any) -> Any:
    """``event`` with ``values`` set past the rules the factory applies, as a client of
    another language or version could send it."""
    return msgspec.structs.replace(event, **values)


async def _send(client: RawClient, batch_id: int, events: list[Any]) -> Any:
    await client.send(batch(batch_id, events, WF, RUN))
    return await client.receive()


async def test_a_nan_is_refused_and_the_run_resumes_after_a_restart(service: Service) -> None:
    events = EventFactory(WF, RUN, "raw")
    client = await RawClient.connect(service.socket)
    opened = numbered([events.workflow_start(2, ""), events.node_start("a", 0)])
    assert await _send(client, 1, opened) == Ack(id=1)
    nan = numbered(
        [_with(events.node_success("a", 0.5, None, None, 0.0), duration_seconds=math.nan)], first=3
    )
    reply = await _send(client, 2, nan)
    assert isinstance(reply, ErrorReply) and reply.id == 2 and not reply.fatal
    assert reply.code == "invalid_event"
    assert reply.message == (
        "event 0: node_success.duration_seconds must be finite and at most 1e+15 in magnitude, "
        "got nan"
    )
    fine = numbered([events.node_success("a", 0.5, None, None, 0.0)], first=4)
    assert await _send(client, 3, fine) == Ack(id=3)
    await client.aclose()

    code, _ = service.signal(signal.SIGTERM)  # an ordinary restart
    assert code == 0
    service.start()
    client = await RawClient.connect(service.socket)
    more = numbered([events.node_start("b", 1), events.workflow_complete(None)], first=5)
    assert await _send(client, 1, more) == Ack(id=1)
    await client.aclose()

    trace, metadata = run_files(service.out, "01")
    assert [(e["event_type"], e["seq"]) for e in trace] == [
        ("workflow_start", 1),
        ("node_start", 2),
        ("node_success", 4),
        ("node_start", 5),
        ("workflow_complete", 6),
    ]
    assert trace[2]["duration_seconds"] == 0.5
    assert metadata["status"] == "complete"
    assert (await service.astatus())["runs_resumed"] == 1


@pytest.mark.parametrize(
    ("make", "field", "shown"),
    [
        (
            lambda e: _with(e.node_success("a", 1.0, None, None, 0.0), cost_usd=math.inf),
            "cost_usd",
            "inf",
        ),
        (
            lambda e: _with(e.node_failure("a", "x", 1.0), duration_seconds=-math.inf),
            "duration_seconds",
            "-inf",
        ),
        (
            lambda e: _with(e.node_retry("a", 1, "", 0.0), delay_seconds=math.nan),
            "delay_seconds",
            "nan",
        ),
        (
            lambda e: _with(e.workflow_complete(None), cumulative_cost_usd=math.nan),
            "cumulative_cost_usd",
            "nan",
        ),
    ],
)
async def test_every_float_field_refuses_what_json_cannot_hold(
    service: Service, make: Any, field: str, shown: str
) -> None:
    events = EventFactory(WF, RUN, "raw")
    client = await RawClient.connect(service.socket)
    assert await _send(client, 1, numbered([events.workflow_start(1, "")])) == Ack(id=1)
    bad = make(events)
    reply = await _send(client, 2, numbered([bad], first=2))
    assert isinstance(reply, ErrorReply) and reply.code == "invalid_event"
    assert f"{field} must be finite and at most 1e+15 in magnitude, got {shown}" in reply.message
    await client.aclose()
    status = await service.astatus()
    assert status["events_rejected"] == 1 and status["errors"] == {"invalid_event": 1}


async def test_node_times_sent_with_a_nan_are_refused(service: Service) -> None:
    events = EventFactory(WF, RUN, "raw")
    client = await RawClient.connect(service.socket)
    assert await _send(client, 1, numbered([events.workflow_start(1, "")])) == Ack(id=1)
    end = events.workflow_complete(None)
    end.node_times = {"a": math.nan}
    reply = await _send(client, 2, numbered([end], first=2))
    assert isinstance(reply, ErrorReply) and reply.code == "invalid_event"
    assert "node_times['a'] must be finite and at most 1e+15 in magnitude, got nan" in (
        reply.message
    )
    await client.aclose()


async def test_a_trace_holding_an_unreadable_value_still_resumes(service: Service) -> None:
    """An older collector wrote a NaN as null: the run resumes anyway, the line keeps its
    producer's place (its resend is left out), and later events are written."""
    events = EventFactory(WF, RUN, "raw")
    client = await RawClient.connect(service.socket)
    sent = numbered([events.workflow_start(1, ""), events.node_start("a", 0)])
    sent.append(numbered([events.node_success("a", 0.5, None, None, 0.0)], first=3)[0])
    assert await _send(client, 1, sent) == Ack(id=1)
    await client.aclose()
    service.kill()
    trace_file = next((service.out / "traces").glob("*.jsonl"))
    lines = trace_file.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"duration_seconds":0.5', b'"duration_seconds":null')
    trace_file.write_bytes(b"".join(lines))

    service.start()
    client = await RawClient.connect(service.socket)
    resent = numbered([events.node_success("a", 0.5, None, None, 0.0)], first=3)
    done = numbered([events.workflow_complete(None)], first=4)
    assert await _send(client, 1, resent) == Ack(id=1)
    assert await _send(client, 2, done) == Ack(id=2)
    await client.aclose()

    trace = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert [(e["event_type"], e["seq"]) for e in trace] == [
        ("workflow_start", 1),
        ("node_start", 2),
        ("node_success", 3),
        ("workflow_complete", 4),
    ]
    metadata = json.loads(Path(service.out / "audit/step_01/metadata_01.json").read_text())
    assert metadata["status"] == "complete"
    status = await service.astatus()
    assert status["events_duplicate"] == 1 and status["runs_resumed"] == 1


async def test_total_nodes_follows_one_rule_in_process_and_in_the_service(
    service: Service, tmp_path: Path
) -> None:
    for bad in (True, -5, 2.0, "3"):
        with pytest.raises(ValueError, match="total_nodes must be a non-negative int") as local:
            tracebus.Observer("step_02_total", tmp_path / "local", bad)  # type: ignore[arg-type]
        assert repr(bad) in str(local.value)
        with pytest.raises(ValueError, match="total_nodes must be a non-negative int"):
            tracebus.connect(service.socket, "step_02_total", bad)  # type: ignore[arg-type]

    events = EventFactory(WF, RUN, "raw")
    client = await RawClient.connect(service.socket)
    reply = await _send(client, 1, numbered([events.workflow_start(-5, "")]))
    assert isinstance(reply, ErrorReply) and reply.code == "invalid_event"
    assert reply.message == (
        "event 0: workflow_start.total_nodes must be a non-negative int, got -5"
    )
    start = msgspec.to_builtins(numbered([events.workflow_start(1, "")])[0])
    start["total_nodes"] = True  # what a client of another language might send
    message = {"kind": "batch", "id": 2, "workflow_id": WF, "run_id": RUN, "events": [start]}
    body = msgspec.msgpack.encode(message)
    await client.send_raw(len(body).to_bytes(4, "big") + body)
    reply = await client.receive()
    assert isinstance(reply, ErrorReply) and reply.code == "invalid_event" and reply.id == 2
    await client.aclose()
    assert not list(service.out.glob("traces/*.jsonl"))  # no run was opened
