"""10,000 bad frames while a well-behaved client keeps working: each is refused and counted,
nothing is written outside the output directory, the good client loses nothing."""

from __future__ import annotations

import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import tracebus
from tracebus._factory import EventFactory
from tracebus._service._protocol import Ack, ErrorReply, Hello, StatusReply, StatusRequest

from .conftest import RawClient, Service, batch, numbered, run_files, seqs_by_producer

SEED = 20_261_127
CHUNK = 100  # frames sent before their replies are read

# frames per kind; the first six ride on shared connections, the rest each end one
SHARED = {
    "random_body": 4_000,
    "wrong_type": 1_500,
    "escaping_id": 1_000,
    "unknown_type": 500,
    "foreign_event": 500,
    "not_open": 500,
    "second_hello": 500,
}
FATAL = {"truncated": 500, "oversize": 500, "not_hello": 500}
EXPECTED_CODES = {
    "random_body": "bad_frame",
    "wrong_type": "invalid_event",
    "escaping_id": "invalid_id",
    "unknown_type": "invalid_event",
    "foreign_event": "invalid_event",
    "not_open": "run_not_open",
    "second_hello": "bad_frame",
    "truncated": "truncated_frame",
    "oversize": "frame_too_large",
    "not_hello": "bad_hello",
}
ESCAPING_IDS = ["../../x", "a/b", ".hidden", "", "..", "/etc/passwd", "a\\b", "x" * 201, "a\x00b"]
FREE_FORM = {"event_type", "output_summary"}  # any value goes there


def _good_event(events: EventFactory, rng: random.Random) -> dict[str, Any]:
    event = rng.choice(
        [
            events.node_start("n", 1),
            events.node_success("n", 0.5, "abc", {"k": 1}, 0.1),
            events.note("m", None, {"x": 1}),
        ]
    )
    event.seq = rng.randint(1, 1_000)
    as_map: dict[str, Any] = msgspec.to_builtins(event)
    return as_map


def _frame(kind: str, rng: random.Random, events: EventFactory) -> bytes:
    """The body of one bad frame of ``kind``."""
    if kind == "random_body":
        return rng.randbytes(rng.randint(1, 300))
    if kind == "second_hello":
        return msgspec.msgpack.encode(Hello(protocol=1, producer="fuzz"))
    event = _good_event(events, rng)
    workflow_id, run_id = "step_09_fuzz", f"fuzz-{rng.randrange(10**9)}"
    event["workflow_id"], event["run_id"] = workflow_id, run_id
    if kind == "wrong_type":
        typed = [f for f, v in event.items() if f not in FREE_FORM and v is not None]
        field = rng.choice(typed)
        event[field] = rng.choice([12_345, [1]] if isinstance(event[field], str) else ["x", [1]])
    elif kind == "escaping_id":
        workflow_id = rng.choice(ESCAPING_IDS)
        event["workflow_id"] = workflow_id
    elif kind == "unknown_type":
        event["event_type"] = rng.choice(["node_explode", "", "WORKFLOW_START", "hello"])
    elif kind == "foreign_event":
        event[rng.choice(["producer", "run_id", "workflow_id"])] = "someone-else"
    elif kind != "not_open":
        raise AssertionError(kind)
    message = {"kind": "batch", "id": 1, "workflow_id": workflow_id, "run_id": run_id}
    message["events"] = [event]
    return msgspec.msgpack.encode(message)


async def _shared_kinds(
    socket: Path, rng: random.Random, events: EventFactory, tick: Any
) -> Counter[str]:
    kinds = [kind for kind, count in SHARED.items() for _ in range(count)]
    rng.shuffle(kinds)
    replies: Counter[str] = Counter()
    client = await RawClient.connect(socket, producer="fuzz")
    for start in range(0, len(kinds), CHUNK):
        chunk = kinds[start : start + CHUNK]
        for kind in chunk:
            body = _frame(kind, rng, events)
            await client.send_raw(struct.pack(">I", len(body)) + body)
        for kind in chunk:
            reply = await client.receive()
            assert isinstance(reply, ErrorReply), (kind, reply)
            assert reply.code == EXPECTED_CODES[kind], (kind, reply)
            assert not reply.fatal
            replies[kind] += 1
        await tick()
    await client.send(StatusRequest())
    assert isinstance(await client.receive(), StatusReply)
    # leave cleanly, and wait for the service to close: then producer "fuzz" is free again
    await client.frames.stream.send_eof()
    with pytest.raises(anyio.EndOfStream):
        await client.receive()
    await client.aclose()
    return replies


async def _fatal_kinds(
    socket: Path, rng: random.Random, events: EventFactory, tick: Any
) -> Counter[str]:
    kinds = [kind for kind, count in FATAL.items() for _ in range(count)]
    rng.shuffle(kinds)
    replies: Counter[str] = Counter()
    for number, kind in enumerate(kinds):
        if kind == "not_hello":
            client = await RawClient.connect(socket, producer=None)
            body = rng.choice([rng.randbytes(40), _frame("not_open", rng, events)])
            await client.send_raw(struct.pack(">I", len(body)) + body)
        else:
            client = await RawClient.connect(socket, producer="fuzz")
            if kind == "oversize":
                await client.send_raw(struct.pack(">I", rng.randint(2**24 + 1, 2**32 - 1)))
            else:
                length = rng.randint(10, 1_000)
                await client.send_raw(struct.pack(">I", length) + rng.randbytes(length // 2))
                await client.frames.stream.send_eof()
        if kind != "truncated":
            reply = await client.receive()
            assert isinstance(reply, ErrorReply) and reply.fatal, (kind, reply)
            assert reply.code == EXPECTED_CODES[kind]
        try:
            await client.receive()
            raise AssertionError("the connection stayed open")
        except anyio.EndOfStream:
            pass
        await client.aclose()
        replies[kind] += 1
        if number % 10 == 0:
            await tick()
    return replies


async def test_fuzzed_frames_are_refused_and_counted_while_a_good_client_works(
    service: Service,
) -> None:
    rng = random.Random(SEED)
    events = EventFactory("step_09_fuzz", "fuzz-run", "fuzz")
    before = await service.astatus()
    outside = sorted(p.name for p in service.out.parent.iterdir())
    notes = 0

    async with tracebus.connect(service.socket, "step_10_good", producer="good") as good:

        async def tick() -> None:
            nonlocal notes
            notes += 1
            await good.note("still here", count=notes)

        shared = await _shared_kinds(service.socket, rng, events, tick)
        fatal = await _fatal_kinds(service.socket, rng, events, tick)
        await good.flush()
        assert good.statistics().delivered == notes + 1

    after = await service.astatus()
    sent = {**SHARED, **FATAL}
    assert {**shared, **fatal} == sent
    assert after["frames_rejected"] - before["frames_rejected"] == sum(sent.values()) == 10_000
    errors = Counter(after["errors"]) - Counter(before["errors"])
    expected: Counter[str] = Counter()
    for kind, count in sent.items():
        expected[EXPECTED_CODES[kind]] += count
    assert errors == expected
    assert after["runs_opened"] == before["runs_opened"] + 1  # the good client's only

    trace, metadata = run_files(service.out, "10")
    assert seqs_by_producer(trace)["good"] == list(range(1, notes + 3))
    assert metadata["status"] == "complete"
    assert sorted(p.name for p in service.out.parent.iterdir()) == outside
    assert sorted(p.name for p in service.out.iterdir()) == [".tracebus", "audit", "logs", "traces"]


async def test_unknown_fields_are_kept_under_extra(service: Service) -> None:
    events = EventFactory("step_11_extra", "extra-run", "raw")
    start = msgspec.to_builtins(numbered([events.workflow_start(1, "")])[0])
    start["added_in_v2"] = {"shiny": True}
    client = await RawClient.connect(service.socket)
    message = {
        "kind": "batch",
        "id": 1,
        "workflow_id": "step_11_extra",
        "run_id": "extra-run",
        "events": [start],
        "a_newer_batch_field": 1,
    }
    await client.send_raw(_framed(msgspec.msgpack.encode(message)))
    assert await client.receive() == Ack(id=1)
    done = numbered([events.workflow_complete(None)], first=2)
    await client.send(batch(2, done, "step_11_extra", "extra-run"))
    assert await client.receive() == Ack(id=2)
    await client.aclose()

    trace, _ = run_files(service.out, "11")
    assert trace[0]["extra"] == {"added_in_v2": {"shiny": True}}
    assert "extra" not in trace[1]


def _framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body
