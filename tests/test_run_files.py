"""The run's own files as a sink: written from batches it prepared, or from plain ones."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

import tracebus._sinks._encoding
from tests.conftest import assert_consistent_run, metadata_of, trace_of
from tracebus._events import Event, WorkflowComplete, json_encoder
from tracebus._factory import EventFactory
from tracebus._layout import create_layout
from tracebus._sinks._encoding import log_line
from tracebus._sinks._run_files import RunFiles
from tracebus._stamping import Stamper
from tracebus._state import RunState

pytestmark = pytest.mark.anyio


async def test_run_files_fed_as_a_plain_sink_write_the_whole_run(out: Path) -> None:
    started = datetime.now()
    layout = create_layout(out, "wf", "r1", started)
    files = RunFiles(
        layout, RunState("wf", "r1", 2, time.time()), pid=os.getpid(), started=started,
        progress=False, console=None,
    )  # fmt: skip
    events = EventFactory("wf", "r1")
    batch = Stamper()(
        [
            events.workflow_start(2, str(out)),
            events.node_start("a", 0),
            events.node_success("a", 0.5, None, {"rows": 1}, 0.25),
            events.node_skipped("b", "cached"),
            events.workflow_complete(None),
        ]
    )
    await files.aopen()
    await files.write_batch(batch[:2])  # nobody called prepare: write_batch does
    await files.write_batch(batch[2:])
    await files.aclose()
    trace = trace_of(layout.trace_file)
    metadata = metadata_of(layout.metadata_file)
    assert_consistent_run(trace, metadata)
    assert [e["event_type"] for e in trace] == [
        "workflow_start", "node_start", "node_success", "node_skipped", "workflow_complete",
    ]  # fmt: skip
    assert (metadata["status"], metadata["nodes_completed"], metadata["nodes_skipped"]) == (
        "complete",
        1,
        1,
    )
    assert trace[-1]["cumulative_cost_usd"] == 0.25
    log = layout.log_file.read_text()
    assert "[RUN] Executing: wf" in log and "Workflow completed: wf" in log
    assert trace_of(layout.audit_trace_file) == trace


async def test_the_run_end_line_gives_every_nodes_time_in_both_files(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The end's node_times are encoded once for its trace and log lines, a part at a time:
    # the lines read as the event encoded alone, and the event the sinks get keeps its dict.
    monkeypatch.setattr(tracebus._sinks._encoding, "NODE_TIMES_PART", 2)
    started = datetime.now()
    layout = create_layout(out, "wf", "r1", started)
    files = RunFiles(
        layout, RunState("wf", "r1", 3, time.time()), pid=os.getpid(), started=started,
        progress=False, console=None,
    )  # fmt: skip
    events = EventFactory("wf", "r1")
    nodes = ["a", "é\u2028b", "c\x7f"]
    batch: list[Event] = [events.workflow_start(3, str(out))]
    for index, node_id in enumerate(nodes):
        batch.append(events.node_start(node_id, index))
        batch.append(events.node_success(node_id, 0.5 + index, None, {}, 0.0))
    batch.append(events.workflow_complete(None))
    await files.aopen()
    kept = files.prepare(Stamper()(batch))
    await files.write_batch(kept)
    await files.aclose()
    end = kept[-1]
    assert isinstance(end, WorkflowComplete) and end.node_times == {
        "a": 0.5, "é\u2028b": 1.5, "c\x7f": 2.5,
    }  # fmt: skip
    trace_lines = layout.trace_file.read_bytes().split(b"\n")
    assert trace_lines[-2] == json_encoder.encode(end)  # as the event alone encodes
    log_lines = layout.log_file.read_text().split("\n")
    end_line = next(line for line in log_lines if "WORKFLOW_COMPLETE" in line)
    assert end_line + "\n" == log_line(end)
    # user text escaped in the log, as in every line
    assert '"c\\x7f":2.5' in end_line and '"é\\u2028b":1.5' in end_line
