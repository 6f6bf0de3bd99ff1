"""Ids with spaces, dots, colons and letters of any script through JetStream: each id is one
subject token, and no two runs' message ids coincide."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nats

import tracebus
from tracebus._nats._settings import NatsSettings

from .conftest import DEADLINE, Collector, trace_lines, wait_for_metadata


async def _stored_subjects(settings: NatsSettings) -> set[str]:
    client = await nats.connect(settings.servers[0])
    try:
        info = await client.jetstream().stream_info(settings.stream.name, subjects_filter=">")
    finally:
        await client.close()
    return set(info.state.subjects or {})


async def test_a_workflow_id_with_spaces_reaches_the_collector_whole(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    workflow_id, run_id = "step_04 simple analysis.workflow – été", "run 1: *>~="
    async with tracebus.connect(
        shared, workflow_id, 2, run_id=run_id, producer="worker ü"
    ) as observer:
        for index in range(2):
            await observer.node_start(f"node {index}", index)
            await observer.node_success(f"node {index}", 0.25)
    prefix = shared.stream.subject_prefix
    assert await _stored_subjects(shared) == {
        f"{prefix}.step_04=20simple=20analysis~workflow=20=E2=80=93=20=C3=A9t=C3=A9"
        ".run=201=3A=20=2A=3E=7E=3D"
    }

    out = tmp_path / "out"
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    metadata = wait_for_metadata(out)
    collector.stop()
    assert (metadata["workflow_id"], metadata["run_id"]) == (workflow_id, run_id)
    assert metadata["nodes_completed"] == 2
    trace = trace_lines(out)
    assert {(e["workflow_id"], e["run_id"], e["producer"]) for e in trace} == {
        (workflow_id, run_id, "worker ü")
    }
    assert len(trace) == 6


async def test_runs_whose_ids_differ_only_by_where_a_colon_is_are_both_written(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    # "<run_id>:<producer>:<seq>" would name the first batch of both runs "a:b:c:1", and
    # JetStream would drop the second as a duplicate of the first.
    for run_id, producer in (("a:b", "c"), ("a", "b:c")):
        async with tracebus.connect(
            shared, f"step_0{len(run_id)}_colons", 1, run_id=run_id, producer=producer
        ) as observer:
            await observer.node_start("only", 0)
            await observer.node_success("only", 0.1)

    out = tmp_path / "out"
    collector = Collector(shared, out)
    collectors.append(collector)
    collector.start()
    try:
        for step, run_id in (("03", "a:b"), ("01", "a")):
            metadata = _metadata_once_complete(out / f"audit/step_{step}/metadata_{step}.json")
            assert metadata["run_id"] == run_id
            assert metadata["events_written"] == 4
            assert metadata["nodes_completed"] == 1
    finally:
        collector.stop()


def _metadata_once_complete(path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        if path.exists():
            metadata: dict[str, Any] = json.loads(path.read_text())
            if metadata["status"] == "complete":
                return metadata
        assert time.monotonic() < deadline, f"{path} never said complete"
        time.sleep(0.05)
