"""The value rules: whatever a user passes, a value is written (visibly escaped or bounded) or
refused at the call, and the run goes on."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Awaitable, Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import tracebus
from tests.conftest import Quiet, assert_consistent_run, metadata_of, trace_of

from .cli import run_tracebus

pytestmark = pytest.mark.anyio

#: What ``os.fsdecode`` returns for a file name that is not UTF-8.
BAD_NAME = os.fsdecode(b"report_\xff.csv")
SHOWN = "report_\\udcff.csv"  # the six characters of the escape, as written


def _types(trace: list[dict[str, Any]]) -> list[str]:
    return [event["event_type"] for event in trace]


async def test_lone_surrogates_are_written_escaped_and_the_run_goes_on(
    out: Path, quiet: Quiet
) -> None:
    obs = quiet.Observer("wf", out, total_nodes=2)
    async with obs:
        await obs.node_start(BAD_NAME, 0)
        await obs.node_failure(BAD_NAME, error=f"cannot read {BAD_NAME}", duration_seconds=0.1)
        await obs.note(f"skipped {BAD_NAME}", node_id=BAD_NAME, path=BAD_NAME)
        await obs.node_skipped("other", reason=BAD_NAME)
        async with obs.node("after", 1):
            pass
    trace = trace_of(obs.trace_file)
    assert _types(trace) == [
        "workflow_start",
        "node_start",
        "node_failure",
        "note",
        "node_skipped",
        "node_start",
        "node_success",
        "workflow_complete",
    ]
    assert trace[1]["node_id"] == SHOWN
    assert trace[2]["error"] == f"cannot read {SHOWN}"
    assert trace[3]["message"] == f"skipped {SHOWN}"
    assert trace[3]["fields"] == {"path": SHOWN}
    assert trace[4]["reason"] == SHOWN
    metadata = metadata_of(obs.metadata_file)
    assert metadata["status"] == "complete"
    assert SHOWN in metadata["node_times"]
    assert_consistent_run(trace, metadata)
    log = obs.log_file.read_text()
    assert f"NODE_FAILURE {SHOWN} | " in log
    assert len(re.findall(r"^\[\d{4}-\d\d-\d\dT", log, re.M)) == len(trace)  # a line each


async def test_an_output_dir_that_is_not_utf8_is_shown_escaped(
    tmp_path: Path, quiet: Quiet
) -> None:
    out = tmp_path / os.fsdecode(b"runs_\xfe")
    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("a", 0.1)
    assert obs.trace_file.parent.parent == out  # the real directory, by its real name
    trace = trace_of(obs.trace_file)
    assert trace[0]["output_dir"] == str(out).replace("\udcfe", "\\udcfe")
    assert "runs_\\udcfe" in trace[-1]["trace_file"]
    metadata = metadata_of(obs.metadata_file)
    assert metadata["status"] == "complete"
    assert "runs_\\udcfe" in metadata["execution_trace_file"]


Call = Callable[[tracebus.Observer], Awaitable[None]]


def _event_by_hand(obs: tracebus.Observer, **fields: Any) -> tracebus.Event:
    event = obs.events.node_success("a", 0.1, None, None, 0.0)
    for name, value in fields.items():
        setattr(event, name, value)
    return event


BAD_CALLS: list[tuple[str, Call, type[Exception], str]] = [
    (
        "cost as text",
        lambda obs: obs.node_success("a", 0.1, cost_usd="0.0012"),  # type: ignore[arg-type]
        TypeError,
        "node_success: cost_usd must be a real number (int, float, Decimal, Fraction), "
        "not str: '0.0012'",
    ),
    (
        "list as node id",
        lambda obs: obs.node_success(["a"], 0.1),  # type: ignore[arg-type]
        TypeError,
        "node_success: node_id must be a str, not list: ['a']",
    ),
    (
        "no duration",
        lambda obs: obs.node_success("a", None),  # type: ignore[arg-type]
        TypeError,
        "node_success: duration_seconds must be a real number",
    ),
    (
        "cost past a float",
        lambda obs: obs.node_success("a", 0.1, cost_usd=10**400),
        ValueError,
        "node_success: cost_usd must be finite and at most 1e+15 in magnitude, got 1000",
    ),
    (
        "NaN duration",
        lambda obs: obs.node_failure("a", "boom", float("nan")),
        ValueError,
        "node_failure: duration_seconds must be finite and at most 1e+15 in magnitude, got nan",
    ),
    (
        "infinite delay",
        lambda obs: obs.node_retry("a", 2, delay_seconds=float("inf")),
        ValueError,
        "node_retry: delay_seconds must be finite",
    ),
    (
        "attempt as text",
        lambda obs: obs.node_retry("a", "2"),  # type: ignore[arg-type]
        TypeError,
        "node_retry: attempt must be an int, not str: '2'",
    ),
    (
        "bool as index",
        lambda obs: obs.node_start("a", True),
        TypeError,
        "node_start: node_index must be an int, not bool: True",
    ),
    (
        "index past 64 bits",
        lambda obs: obs.node_start("a", 2**70),
        ValueError,
        "node_start: node_index must fit in 64 bits",
    ),
    (
        "exception as error",
        lambda obs: obs.node_failure("a", ValueError("boom"), 0.1),  # type: ignore[arg-type]
        TypeError,
        "node_failure: error must be a str, not ValueError: ValueError('boom')",
    ),
    (
        "number as message",
        lambda obs: obs.note(42),  # type: ignore[arg-type]
        TypeError,
        "note: message must be a str, not int: 42",
    ),
    (
        "very long node id",
        lambda obs: obs.node_start("n" * 5_000),
        ValueError,
        "node_start: node_id must be at most 1024 characters, got 5000",
    ),
    (
        "infinite total cost",
        lambda obs: obs.workflow_complete(float("inf")),
        ValueError,
        "workflow_complete: cumulative_cost_usd must be finite",
    ),
    (
        "bytes as workflow error",
        lambda obs: obs.workflow_error(b"disk on fire"),  # type: ignore[arg-type]
        TypeError,
        "workflow_error: error must be a str, not bytes",
    ),
    (
        "event built by hand",
        lambda obs: obs.emit(_event_by_hand(obs, cost_usd="0.5")),
        TypeError,
        "emit: node_success.cost_usd must be a real number",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [case[1:] for case in BAD_CALLS],
    ids=[case[0] for case in BAD_CALLS],
)
async def test_a_bad_value_is_refused_at_the_call_and_the_run_goes_on(
    out: Path, call: Call, error: type[Exception], message: str, quiet: Quiet
) -> None:
    obs = quiet.Observer("wf", out, total_nodes=1)
    async with obs:
        await obs.node_start("first", 0)
        accepted = obs.statistics().emitted
        with pytest.raises(error, match=re.escape(message)):
            await call(obs)
        assert obs.statistics().emitted == accepted  # refused before anything was queued
        await obs.node_success("first", 0.5)
    trace = trace_of(obs.trace_file)
    assert _types(trace) == ["workflow_start", "node_start", "node_success", "workflow_complete"]
    metadata = metadata_of(obs.metadata_file)
    assert metadata["status"] == "complete"
    assert_consistent_run(trace, metadata)


async def test_a_node_cost_that_is_not_a_number_fails_the_node_not_the_run(
    out: Path, quiet: Quiet
) -> None:
    obs = quiet.Observer("wf", out)
    with pytest.raises(TypeError, match=re.escape("cost: usd must be a real number")):
        async with obs:
            async with obs.node("costly") as node:
                node.cost("0.5")  # type: ignore[arg-type]
    trace = trace_of(obs.trace_file)
    assert _types(trace) == ["workflow_start", "node_start", "node_failure", "workflow_error"]
    assert trace[2]["error"].startswith("TypeError: cost: usd must be a real number")
    assert metadata_of(obs.metadata_file)["status"] == "error"


async def test_other_real_numbers_are_stored_as_floats(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("d", Decimal("0.5"), cost_usd=Decimal("0.0012"))  # type: ignore[arg-type]
        await obs.node_success("f", Fraction(1, 4), cost_usd=1)  # type: ignore[arg-type]
        await obs.node_failure("n", "boom", 2, cost_usd=None)
        await obs.node_retry("n", 2, error=None, delay_seconds=None)
        async with obs.node("s") as node:
            node.cost(Decimal("0.25"))  # type: ignore[arg-type]
    trace = trace_of(obs.trace_file)
    success_d, success_f, failure, retry = trace[1:5]
    assert (success_d["duration_seconds"], success_d["cost_usd"]) == (0.5, 0.0012)
    assert (success_f["duration_seconds"], success_f["cost_usd"]) == (0.25, 1.0)
    assert isinstance(success_f["cost_usd"], float)
    assert (failure["duration_seconds"], failure["cost_usd"]) == (2.0, 0.0)
    assert (retry["error"], retry["delay_seconds"]) == ("", 0.0)
    assert trace[-2]["cost_usd"] == 0.25
    metadata = metadata_of(obs.metadata_file)
    assert metadata["cumulative_cost_usd"] == pytest.approx(1.2512)
    assert metadata["status"] == "complete"


async def test_payload_values_json_would_lose_are_kept_visibly(out: Path, quiet: Quiet) -> None:
    summary = {
        "score": float("nan"),
        "best": float("inf"),
        "worst": float("-inf"),
        "file": BAD_NAME,
        BAD_NAME: [1, None, (2, 3)],
        "fine": None,
    }
    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("a", 0.1, output_summary=summary)
        await obs.note("ratio", ratio=float("nan"), none=None)
        await obs.node_success("b", 0.1, output_summary={"fine": None})
    trace = trace_of(obs.trace_file)
    assert trace[1]["output_summary"] == {
        "score": {"$repr": "nan"},
        "best": {"$repr": "inf"},
        "worst": {"$repr": "-inf"},
        "file": SHOWN,
        SHOWN: [1, None, [2, 3]],
        "fine": None,
    }
    assert trace[2]["fields"] == {"ratio": {"$repr": "nan"}, "none": None}
    assert trace[3]["output_summary"] == {"fine": None}
    assert metadata_of(obs.metadata_file)["status"] == "complete"


async def test_an_event_the_writer_cannot_encode_leaves_an_encode_error_in_its_place(
    out: Path,
    quiet: Quiet,
) -> None:
    obs = quiet.Observer("wf", out)
    async with obs:
        event = obs.events.node_start("n", 0)
        await obs.emit(event)
        event.node_id = f"changed after the call {BAD_NAME}"  # before the writer takes it
        await obs.node_success("n", 0.1)
    trace = trace_of(obs.trace_file)
    assert _types(trace) == ["workflow_start", "encode_error", "node_success", "workflow_complete"]
    record = trace[1]
    assert record["seq"] == 2 and record["failed_event_type"] == "node_start"
    assert record["node_id"] == "changed after the call report_\\udcff.csv"
    assert record["error"].startswith("UnicodeEncodeError: ")
    assert record["run_id"] == obs.run_id
    log = obs.log_file.read_text()
    assert " ENCODE_ERROR changed after the call report_\\udcff.csv | " in log
    metadata = metadata_of(obs.metadata_file)
    assert metadata["status"] == "complete" and metadata["events_written"] == 4
    run = tracebus.read_run(obs.trace_file)
    assert any("could not be encoded" in warning for warning in run.warnings)


def test_sync_observer_with_a_full_queue_writes_every_event_of_odd_values(
    out: Path, quiet: Quiet
) -> None:
    obs = quiet.SyncObserver("wf", out, capacity=4)

    def produce() -> None:
        for i in range(300):
            name = os.fsdecode(f"file_{i}_".encode() + b"\xff")
            obs.node_start(name, i)
            obs.node_failure(name, f"{name} is gone", 0.1, cost_usd=Decimal("0.001"))  # type: ignore[arg-type]

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the producer thread is stuck on a full queue"
    obs.close(timeout=60)
    trace = trace_of(obs.trace_file)
    assert len(trace) == 602 and trace[-1]["event_type"] == "workflow_complete"
    assert trace[2]["error"] == "file_0_\\udcff is gone"
    metadata = metadata_of(obs.metadata_file)
    assert metadata["nodes_failed"] == 300
    assert metadata["cumulative_cost_usd"] == pytest.approx(0.3)


class SlowSink:
    """Written in line with the run's files (``direct``): holds the writer up."""

    direct = True

    async def write_batch(self, events: object) -> None:
        await anyio.sleep(3)


def test_sync_close_that_runs_out_of_time_says_so(out: Path, quiet: Quiet) -> None:
    obs = quiet.SyncObserver("wf", out, sinks=[SlowSink()])
    obs.node_start("a", 0)
    with pytest.raises(tracebus.CloseTimeoutError, match="close timed out after 0.5s"):
        obs.close(timeout=0.5)
    obs._loop._thread.join(timeout=60)  # the run still closes, in its own thread
    assert metadata_of(obs.metadata_file)["status"] == "complete"


# -- the payload bound -------------------------------------------------------------------------


def _marker_of(value: Any) -> dict[str, Any]:
    encoded = msgspec.json.encode(value)
    return {
        "$truncated": {
            "bytes": len(encoded),
            "sha256": hashlib.sha256(encoded).hexdigest(),
            "prefix": encoded[:1024].decode(),
        }
    }


async def test_a_payload_over_the_bound_is_stored_as_its_hash_size_and_prefix(
    out: Path, quiet: Quiet
) -> None:
    big = {"rows": [{"id": i, "name": f"row {i}"} for i in range(10_000)]}
    error = "E" * 100_000
    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("a", 0.1, output_summary=big)
        await obs.note("blob", data="y" * 100_000)
        await obs.node_failure("b", error, 0.1)
        await obs.node_success("c", 0.1, output_summary={"small": 1})
    trace = trace_of(obs.trace_file)
    assert trace[1]["output_summary"] == _marker_of(big)
    assert trace[2]["fields"] == _marker_of({"data": "y" * 100_000})
    digest = hashlib.sha256(error.encode()).hexdigest()
    assert trace[3]["error"] == (
        "E" * 1024 + f"... [truncated by tracebus: 100000 bytes, sha256 {digest}]"
    )
    assert trace[4]["output_summary"] == {"small": 1}
    assert max(map(len, obs.trace_file.read_bytes().splitlines())) < 4_096
    assert max(map(len, obs.log_file.read_bytes().splitlines())) < 4_096


async def test_the_bound_is_an_option_of_the_observer(out: Path, quiet: Quiet) -> None:
    kept, cut = {"text": "k" * 400}, {"text": "c" * 2_000}
    async with quiet.Observer("wf", out, max_payload_bytes=1_000) as obs:
        await obs.node_success("kept", 0.1, output_summary=kept)
        await obs.node_success("cut", 0.1, output_summary=cut)
    trace = trace_of(obs.trace_file)
    assert trace[1]["output_summary"] == kept
    assert trace[2]["output_summary"] == _marker_of(cut)


def test_the_bound_is_an_option_of_the_sync_observer(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out, max_payload_bytes=1_000) as obs:
        obs.node_success("cut", 0.1, output_summary={"text": "c" * 2_000})
    assert trace_of(obs.trace_file)[1]["output_summary"] == _marker_of({"text": "c" * 2_000})


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-5, ValueError), ("64k", TypeError), (True, TypeError)]
)
def test_a_bad_bound_is_refused_at_construction(out: Path, value: Any, error: type) -> None:
    with pytest.raises(error, match="max_payload_bytes must be"):
        tracebus.Observer("wf", out, max_payload_bytes=value)
    assert not out.exists()


async def test_a_payload_nested_too_deep_keeps_its_first_levels_and_stays_readable(
    out: Path,
    quiet: Quiet,
) -> None:
    deep: list[Any] = []
    innermost = deep
    for _ in range(200):
        innermost.append([])
        innermost = innermost[0]
    wide = {"rows": [{"id": i, "tags": [i, [i]]} for i in range(200)]}  # many brackets, shallow
    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("deep", 0.1, output_summary=deep)
        await obs.node_success("wide", 0.1, output_summary=wide)
    trace = trace_of(obs.trace_file)  # readable: no line nests deeper than a reader takes
    stored, levels = trace[1]["output_summary"], 0
    while isinstance(stored, list):
        stored, levels = stored[0], levels + 1
    assert levels == 64 and stored == {"$repr": "<list nested deeper than 64 levels>"}
    assert trace[2]["output_summary"] == wide
    for command in ("summary", "timeline"):
        assert run_tracebus(command, str(obs.trace_file)).returncode == 0


@pytest.mark.parametrize("total", [True, 2**70, -1, 2.0])
def test_a_total_no_run_can_hold_is_refused_at_construction(out: Path, total: Any) -> None:
    with pytest.raises(ValueError, match="total_nodes must be a non-negative int"):
        tracebus.Observer("wf", out, total_nodes=total)
    with pytest.raises(ValueError, match="total_nodes must be a non-negative int"):
        tracebus.SyncObserver("wf", out, total_nodes=total)
    assert not out.exists()


async def test_an_output_that_is_not_utf8_still_has_a_hash(out: Path, quiet: Quiet) -> None:
    expected = hashlib.sha256(BAD_NAME.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    assert tracebus.hash_output(BAD_NAME) == expected
    async with quiet.Observer("wf", out) as obs:
        async with obs.node("read", 0) as node:
            node.output(BAD_NAME)
    success = trace_of(obs.trace_file)[2]
    assert success["output_hash"] == expected and success["output_summary"] == SHOWN
