"""Nesting, dependencies, captured logs and usage published through NATS JetStream."""

from __future__ import annotations

from pathlib import Path

import tracebus
from tracebus._nats._settings import NatsSettings

from ..service.test_workflow_events import EXPECTED, agent_events, agent_workflow
from .conftest import Collector, trace_lines, wait_for_metadata


async def test_nesting_logs_and_usage_reach_the_run_through_nats(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    out = tmp_path / "out"
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    async with tracebus.connect(shared, "wf-agent", capture_logging="WARNING") as obs:
        await agent_workflow(obs)
    metadata = wait_for_metadata(out)
    trace = trace_lines(out)
    assert agent_events(trace) == EXPECTED
    assert [e["schema_version"] for e in trace] == [tracebus.SCHEMA_VERSION] * len(trace)
    log = next(e for e in trace if e["event_type"] == "log")
    assert (log["logger"], log["message"]) == ("app.tools", "search is slow")
    assert metadata["events_written"] == len(trace)
    collector.stop()
