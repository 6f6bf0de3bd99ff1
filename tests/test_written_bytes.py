"""The trace and log lines of a fixed run are the bytes kept in ``tests/data/``: a change to
how the writer stamps, counts or encodes may make them faster, never different.

The expected files were written by the writer before its per-event work was cut; to see a
difference, ``python -m tests.test_written_bytes`` writes the lines the code makes now next
to them (``*.now``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tracebus
from tracebus._events import DEFAULT_MAX_PAYLOAD_BYTES, check_event
from tracebus._sinks._encoding import encode_log, encode_trace
from tracebus._state import RunState
from tracebus._writer import STEP_EVENTS

DATA = Path(__file__).parent / "data"
_T0 = 1_764_659_417.25  # 2025-12-02T07:10:17.25Z
_COMMON: dict[str, Any] = {"pid": 4242, "workflow_id": "wf_bytes", "run_id": "r1"}


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def _events() -> list[tracebus.Event]:
    """Every kind of event, with the texts, numbers and payloads that need care."""
    e = tracebus
    at = iter(
        [_T0 + i * 0.000_371 for i in range(30)]  # within a second, then across seconds
        + [_T0 + 0.75 + i * 0.125 for i in range(30)]
    )
    nodes = [f"node_{i:03d}" for i in range(12)]
    events: list[tracebus.Event] = [
        e.WorkflowStart(epoch_seconds=next(at), **_COMMON, message="started", total_nodes=12)
    ]
    for index, node in enumerate(nodes):
        events.append(
            e.NodeStart(epoch_seconds=next(at), **_COMMON, node_id=node, node_index=index)
        )
        summary: Any = {"node": index, "rows": index * 7, "status": "ok", "ratio": index / 3}
        events.append(
            e.NodeSuccess(
                epoch_seconds=next(at),
                **_COMMON,
                node_id=node,
                duration_seconds=index * 0.001_234_567,
                output_hash=f"{index:016x}",
                output_summary=summary,
                cost_usd=0.0 if index % 3 else 0.015 * index,
            )
        )
    odd = 'caf\u00e9 \u2028 line\nbreak\ttab\x7f\x1b[31m \u202e "q" \\'
    events += [
        e.NodeStart(epoch_seconds=next(at), **_COMMON, node_id=odd, node_index=None),
        e.NodeStart(epoch_seconds=next(at), **_COMMON, node_id="", node_index=3),
        e.NodeStart(
            epoch_seconds=next(at),
            **_COMMON,
            node_id="child",
            parent_id="node_001",
            depends_on=["node_002", "node_003"],
        ),
        e.NodeSuccess(
            epoch_seconds=next(at),
            **_COMMON,
            node_id=odd,
            duration_seconds=1e-05,
            output_hash=None,
            output_summary=[Opaque(), float("nan"), float("-inf"), "\u00e9\u2029", 2**70],
        ),
        e.NodeSuccess(
            epoch_seconds=next(at), **_COMMON, node_id="", duration_seconds=0.0, output_summary=None
        ),
        e.NodeFailure(
            epoch_seconds=next(at),
            **_COMMON,
            node_id="child",
            duration_seconds=1.5,
            error='boom "quoted"\nsecond line',
            cost_usd=0.1,
        ),
        e.NodeSkipped(epoch_seconds=next(at), **_COMMON, node_id="skipped", reason="why\u00e9"),
        e.NodeRetry(
            epoch_seconds=next(at),
            **_COMMON,
            node_id="child",
            attempt=2,
            error="e",
            delay_seconds=1.0,
        ),
        e.Note(
            epoch_seconds=next(at), **_COMMON, message="hello\nthere", fields={"k": [1, {"v": 2}]}
        ),
        e.Note(epoch_seconds=next(at), **_COMMON, message="", node_id="node_000"),
        e.Log(
            epoch_seconds=next(at),
            **_COMMON,
            message="a record",
            node_id="node_004",
            logger="app.part",
            level="WARNING",
            levelno=30,
            exception="Traceback...\nValueError: x",
        ),
        e.Usage(
            epoch_seconds=next(at),
            **_COMMON,
            node_id="node_004",
            model="model-a",
            input_tokens=120,
            output_tokens=30,
            cost_usd=0.0025,
            counters={"cached_tokens": 100},
        ),
        # a remote producer's events: their own seq and timestamp, and a resend left out
        e.NodeStart(
            epoch_seconds=next(at),
            **_COMMON,
            node_id="remote",
            producer="host-1:77",
            seq=1,
            timestamp="2025-12-02T07:10:19.000001+00:00\x1b",
        ),
        e.NodeStart(
            epoch_seconds=next(at), **_COMMON, node_id="remote", producer="host-1:77", seq=1
        ),
        e.NodeSuccess(
            epoch_seconds=next(at),
            **_COMMON,
            node_id="remote",
            duration_seconds=0.5,
            producer="host-1:77",
            seq=2,
        ),
    ]
    # seconds' edges and rounding to the microsecond, then back in time
    for epoch in (1_764_659_999.999_999_5, 1_764_660_000.000_000_5, 1_764_660_000.5, 1.0, 0.0):
        events.append(e.Note(epoch_seconds=epoch, **_COMMON, message="edge"))
    events.append(e.WorkflowComplete(epoch_seconds=_T0 + 60, **_COMMON))
    for event in events:
        check_event(event, DEFAULT_MAX_PAYLOAD_BYTES)  # as emit() does
    return events


def lines_now(step: int) -> tuple[bytes, bytes]:
    """The trace and log lines the writer's steps make of ``_events()`` in steps of ``step``."""
    events = _events()
    state = RunState("wf_bytes", "r1", 12, _T0)
    stamp = state.stamper
    trace, log = [], []
    for first in range(0, len(events), step):
        kept = state.count(stamp(events[first : first + step]))
        trace.append(encode_trace(kept))
        log.append(encode_log(kept))
    return b"".join(trace), _as_bytes(log)


def _as_bytes(parts: list[Any]) -> bytes:
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)


def test_trace_and_log_lines_are_the_bytes_kept() -> None:
    expected = (DATA / "lines.jsonl").read_bytes(), (DATA / "lines.log").read_bytes()
    for step in (1, 7, STEP_EVENTS):
        assert lines_now(step) == expected


if __name__ == "__main__":
    trace, log = lines_now(STEP_EVENTS)
    suffix = sys.argv[1] if len(sys.argv) > 1 else ".now"
    (DATA / f"lines.jsonl{suffix}").write_bytes(trace)
    (DATA / f"lines.log{suffix}").write_bytes(log)
