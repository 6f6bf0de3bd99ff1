"""Log lines made a batch at a time are the lines ``log_line`` makes one event at a time."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import tracebus
from tests.conftest import Quiet, trace_of
from tracebus._factory import EventFactory
from tracebus._sinks._encoding import encode_log, log_line
from tracebus._state import RunState
from tracebus._writer import STEP_EVENTS

pytestmark = pytest.mark.anyio


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def _every_kind() -> list[tracebus.Event]:
    events = EventFactory("step_03_enc", "r1")
    return [
        events.workflow_start(4, "out"),
        events.node_start("a", 0),
        events.node_start("", None),
        events.node_start("caf\u00e9 \u2028 line\nbreak", 2),
        events.node_success("a", 0.5, "h", {"rows": [1, 2], "s": "x"}, 0.25),
        events.node_success("", 1e-05, None, None, 0.0),
        events.node_success("b", 2.0, None, [Opaque(), float("nan")], 0.0),
        events.node_failure("c", 'boom "quoted"', 1.5, 0.1),
        events.node_skipped("d", "why"),
        events.node_retry("c", 2, "e", 1.0),
        events.note("hello", None, {"k": [1, {"v": Opaque()}]}),
        events.note("", "a", {}),
        events.workflow_error("it broke"),
        events.workflow_complete(None),
    ]


def test_batch_log_lines_equal_single_lines_for_every_kind() -> None:
    batch = _every_kind()
    RunState("step_03_enc", "r1", 4, 0.0).apply(batch)
    assert encode_log(batch) == "".join(log_line(event) for event in batch)
    assert encode_log([]) == ""


def test_batch_with_a_value_json_cannot_hold_falls_back_line_by_line() -> None:
    events = EventFactory("wf", "r")
    batch = [
        events.node_start("a", 0),
        events.node_success("a", 0.5, None, {Opaque(): 1}, 0.0),  # a key msgspec refuses
        events.node_success("b", 0.5, None, {"fine": 1}, 0.0),
    ]
    RunState("wf", "r", 2, 0.0).apply(batch)
    text = encode_log(batch)
    assert text == "".join(log_line(event) for event in batch)
    assert text.count("\n") == 3 and '"$repr"' in text


async def test_a_batch_bigger_than_a_step_is_written_whole_and_in_order(
    out: Path, quiet: Quiet
) -> None:
    count = 3 * STEP_EVENTS + 17
    obs = quiet.Observer("wf", out)
    async with obs:
        for i in range(count):  # no await in between: the writer gets them as one batch
            obs.bus.emit_nowait(obs.events.node_start(f"n{i}", i))
        await anyio.lowlevel.checkpoint()
    trace = trace_of(obs.trace_file)
    assert [e["seq"] for e in trace] == list(range(1, count + 3))
    assert [e.get("node_id") for e in trace[1:-1]] == [f"n{i}" for i in range(count)]
    log = obs.log_file.read_text().splitlines()
    starts = [line for line in log if " NODE_START " in line]
    assert [line.split(" NODE_START ")[1].split(" | ")[0] for line in starts] == [
        f"n{i}" for i in range(count)
    ]
    assert obs.statistics().batches < count  # they really were batched
