"""The run's own files as a sink: written from batches it prepared, or from plain ones."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import assert_consistent_run, metadata_of, trace_of
from tracebus._factory import EventFactory
from tracebus._layout import create_layout
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
